"""Key rules: which field names hold secrets, which are known safe, and how each kind is masked.

Keys are compared case-insensitively and split into words, so ``customer_email``,
``X-Api-Key``, ``http.request.header.authorization`` and bracketed form keys such as
``card[number]`` are all recognised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import IntEnum

from opentelemetry.semconv._incubating.attributes import (
    deployment_attributes,
    event_attributes,
    net_attributes,
    thread_attributes,
)
from opentelemetry.semconv._incubating.attributes import http_attributes as old_http
from opentelemetry.semconv.attributes import (
    code_attributes,
    error_attributes,
    exception_attributes,
    http_attributes,
    network_attributes,
    otel_attributes,
    server_attributes,
    service_attributes,
    telemetry_attributes,
    url_attributes,
    user_agent_attributes,
)

from otel_logkit import attributes as attr


class KeyKind(IntEnum):
    """What a key says about its value."""

    NORMAL = 0
    """Unknown key: the value detectors run on its strings."""
    SAFE = 1
    """Allow-listed key (ids, amounts, timestamps, trace ids, ...): left untouched."""
    SECRET = 2
    """Passwords, tokens, CVVs, OTPs, ...: replaced by a fixed marker."""
    CARD = 3
    """Card number keys: masked to the last four digits."""
    PHONE = 4
    """Phone number keys: masked to the last four digits."""
    EMAIL = 5
    """E-mail keys: masked to the domain."""
    SMS_CONTENT = 6
    """Message text sent through an SMS gateway: only its length is kept."""


_SAFE_LOG_FIELDS = frozenset(
    {
        "timestamp", "time", "ts", "level", "log_level", "logger", "logger_name", "name",
        "trace_id", "span_id", "parent_span_id", "trace_flags", "request_id", "correlation_id",
        "method", "http_method", "route", "path", "status", "status_code", "duration_ms",
        "duration", "elapsed_ms", "service", "service_name", "env", "environment", "version",
        "host", "hostname", "pid", "thread", "thread_name", "filename", "func_name", "lineno",
        "module", "error_type", "error_code", "gateway", "kind", "operation", "scheme",
        "amount", "amount_cents", "total", "subtotal", "currency", "price", "quantity", "count",
        "size", "bytes", "length", "attempt", "retries", "created", "created_at", "updated_at",
        "date", "expires_at", "exp_month", "exp_year", "last4", "brand", "country",
    }
)  # fmt: skip
_SAFE_ATTRIBUTES = frozenset(
    {
        http_attributes.HTTP_REQUEST_METHOD, http_attributes.HTTP_RESPONSE_STATUS_CODE,
        http_attributes.HTTP_ROUTE, old_http.HTTP_METHOD, old_http.HTTP_STATUS_CODE, old_http.HTTP_SCHEME,
        old_http.HTTP_USER_AGENT, url_attributes.URL_SCHEME, server_attributes.SERVER_ADDRESS,
        server_attributes.SERVER_PORT, network_attributes.NETWORK_PEER_ADDRESS,
        network_attributes.NETWORK_PEER_PORT, network_attributes.NETWORK_PROTOCOL_VERSION,
        net_attributes.NET_PEER_NAME, net_attributes.NET_PEER_PORT, user_agent_attributes.USER_AGENT_ORIGINAL,
        error_attributes.ERROR_TYPE, exception_attributes.EXCEPTION_TYPE, event_attributes.EVENT_NAME,
        otel_attributes.OTEL_STATUS_CODE, service_attributes.SERVICE_NAME,
        deployment_attributes.DEPLOYMENT_ENVIRONMENT_NAME, telemetry_attributes.TELEMETRY_SDK_NAME,
        telemetry_attributes.TELEMETRY_SDK_LANGUAGE, telemetry_attributes.TELEMETRY_SDK_VERSION,
        code_attributes.CODE_FUNCTION_NAME, code_attributes.CODE_LINE_NUMBER, code_attributes.CODE_FILE_PATH,
        thread_attributes.THREAD_ID, thread_attributes.THREAD_NAME, attr.REQUEST_ID, attr.GATEWAY_KIND,
        attr.GATEWAY_OPERATION, attr.GATEWAY_STATUS_CODE, attr.GATEWAY_ERROR_CODE, attr.GATEWAY_DURATION_MS,
        attr.HOOK_ERROR,
    }
)  # fmt: skip
URL_ATTRIBUTES: frozenset[str] = frozenset(
    {url_attributes.URL_FULL, url_attributes.URL_QUERY, old_http.HTTP_URL, old_http.HTTP_TARGET}
)
"""Span attributes that hold a URL (or its query), redacted as URLs rather than as text."""

QUERY_ATTRIBUTE = url_attributes.URL_QUERY
"""The one URL attribute that holds a query string alone."""

SAFE_KEYS: frozenset[str] = _SAFE_LOG_FIELDS | _SAFE_ATTRIBUTES
"""Keys whose values are never redacted; their values are ids, amounts or metadata, not secrets."""

# Substrings: a key containing one of these names a secret (accessToken, client_secret, ...).
SECRET_SUBSTRINGS: tuple[str, ...] = (
    "password", "passwd", "secret", "token", "apikey", "api_key", "api-key", "authorization",
    "cookie", "credential", "private_key", "privatekey", "signature",
)  # fmt: skip
# Whole words (after splitting on non-alphanumerics): short names that would over-match as
# substrings (pin in shipping, pan in company).
SECRET_WORDS: frozenset[str] = frozenset(
    {"pwd", "cvv", "cvv2", "cvc", "cvc2", "otp", "pin", "passcode", "verification_code",
     "security_code", "code_verifier", "auth", "sessionid", "session_id", "ssn", "jwt", "csrf"}
)  # fmt: skip
CARD_WORDS: frozenset[str] = frozenset(
    {"card", "card_number", "cardnumber", "pan", "cc_number", "ccnumber", "credit_card", "creditcard"}
)
"""Card keys; a bracketed key with a card part (``card[number]``) is a card key too."""
PHONE_WORDS: frozenset[str] = frozenset({"phone", "phone_number", "phonenumber", "mobile", "msisdn", "tel"})
SMS_PHONE_WORDS: frozenset[str] = frozenset({"to", "from_number", "recipient", "destination"})
"""On SMS gateways these also hold the recipient's phone number."""
EMAIL_WORDS: frozenset[str] = frozenset({"email", "e_mail", "email_address", "emailaddress"})
SMS_CONTENT_WORDS: frozenset[str] = frozenset({"body", "text", "message", "content"})
"""On SMS gateways these hold the message, which often carries a one-time code."""

_SPLIT = re.compile(r"[^a-z0-9]+")
_BRACKETS = re.compile(r"[\[\]]+")


def _key_parts(key: str) -> list[str]:
    """``payment[card][number]`` -> ``["payment", "card", "number"]``; plain keys -> ``[key]``."""
    return [part for part in _BRACKETS.split(key) if part] or [key]


def classify_key(key: str, extra_keys: Iterable[str] = (), *, sms: bool = False) -> KeyKind:
    """Tell what kind of value ``key`` holds (case-insensitive).

    Args:
        key: a field, attribute, header, query or form parameter name.
        extra_keys: lower-case names from ``LOGKIT_REDACT_KEYS``, treated as secrets.
        sms: apply the SMS gateway rules (recipient and message keys).
    """
    lowered = key.lower()
    if lowered in SAFE_KEYS:
        return KeyKind.SAFE
    extra = frozenset(extra_keys)
    parts = _key_parts(lowered)
    kinds = [_classify_part(part, extra, sms=sms) for part in parts]
    # A bracketed key is judged by its most sensitive part: card[cvc] is a secret, card[number] a card.
    for kind in (KeyKind.SECRET, KeyKind.SMS_CONTENT, KeyKind.CARD, KeyKind.PHONE, KeyKind.EMAIL):
        if kind in kinds:
            return kind
    if len(parts) > 1 and parts[-1] in SAFE_KEYS:
        return KeyKind.SAFE
    if _looks_like_id(_key_parts(key)[-1]):
        return KeyKind.SAFE
    return KeyKind.NORMAL


def _classify_part(part: str, extra: frozenset[str], *, sms: bool) -> KeyKind:  # noqa: PLR0911 - rules in priority order
    if part in extra:
        return KeyKind.SECRET
    words = [w for w in _SPLIT.split(part) if w]
    joined = "_".join(words)
    if joined in extra or any(word in extra for word in words):
        return KeyKind.SECRET
    if sms and (joined in SMS_CONTENT_WORDS):
        return KeyKind.SMS_CONTENT
    if any(sub in part for sub in SECRET_SUBSTRINGS) or joined in SECRET_WORDS:
        return KeyKind.SECRET
    if any(word in SECRET_WORDS for word in words):
        return KeyKind.SECRET
    if joined in CARD_WORDS or any(word in CARD_WORDS and word != "number" for word in words):
        return KeyKind.CARD
    if joined in PHONE_WORDS or any(word in PHONE_WORDS for word in words):
        return KeyKind.PHONE
    if sms and (joined in SMS_PHONE_WORDS or words[-1:] == ["to"]):
        return KeyKind.PHONE
    if joined in EMAIL_WORDS or any(word in EMAIL_WORDS for word in words):
        return KeyKind.EMAIL
    return KeyKind.NORMAL


def _looks_like_id(key: str) -> bool:
    """``order_id``, ``customerId``, ``trace-ids``, ``uuid``: opaque identifiers, safe to keep."""
    lowered = key.lower()
    return (
        lowered in ("id", "ids", "uuid")
        or lowered.endswith(("_id", "-id", ".id", "_ids", "uuid", "_ref"))
        or (key.endswith(("Id", "Ids", "ID")))
    )


# What an allow-listed key promises about its value. A value of that shape is left alone; any
# other string under the same key is searched by the value detectors like every other string
# ("by value, whatever the key"): a card number under `host`, an e-mail in a `path`.
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_LONG_DIGIT_RUN = re.compile(r"\d{13}")
_SHAPES: dict[str, re.Pattern[str]] = {
    "trace_id": _HEX32,
    "span_id": _HEX16,
    "parent_span_id": _HEX16,
    "timestamp": _ISO_TIME,
    "time": _ISO_TIME,
    "ts": _ISO_TIME,
    "created": _ISO_TIME,
    "created_at": _ISO_TIME,
    "updated_at": _ISO_TIME,
    "expires_at": _ISO_TIME,
    "date": _ISO_TIME,
    "level": _WORD,
    "log_level": _WORD,
    "method": _WORD,
    "http_method": _WORD,
    "http.request.method": _WORD,
    "http.method": _WORD,
    "currency": _WORD,
    "env": _WORD,
    "environment": _WORD,
    "error_type": _WORD,
    "error_code": _WORD,
    "exception.type": _WORD,
    "error.type": _WORD,
}


def has_promised_shape(key: str, value: str) -> bool:
    """Whether ``value`` has the shape the allow-listed ``key`` promises (then it is left alone).

    Ids must look like ids: a UUID or hex id, or a token of letters, digits and ``_.:-`` with no
    run of 13 digits (the shortest card number) and no JWT. Keys with no promised shape (``path``,
    ``host``, ``name``, ...) always have their values searched.
    """
    lowered = key.lower()
    shape = _SHAPES.get(lowered)
    if shape is not None:
        return shape.fullmatch(value) is not None
    if lowered in ("request_id", "correlation_id") or _looks_like_id(_key_parts(key)[-1]):
        if _UUID.fullmatch(value):
            return True
        return (
            _TOKEN.fullmatch(value) is not None
            and _LONG_DIGIT_RUN.search(value) is None
            and "eyJ" not in value  # a JWT is made of the same characters
        )
    return False
