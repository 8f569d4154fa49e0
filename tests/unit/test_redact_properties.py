"""Property tests: generated secrets never survive redaction, in any container or output."""

from __future__ import annotations

import base64
import json
import logging
import traceback
import urllib.parse
from typing import Any

import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_logkit.redact import REDACTED, RedactingProcessor, RedactingSpanExporter, Redactor
from otel_logkit.testing import capture
from tests.support.cards import luhn_complete

REDACTOR = Redactor()
DIGITS = "0123456789"
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def card_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A Luhn-valid card number of a real network's range, as (formatted, digits), in one of four layouts."""
    first, length = draw(
        st.sampled_from(
            [("4", 13), ("4", 16), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
             ("37", 15), ("6011", 16), ("65", 16), ("36", 14), ("3528", 16), ("3589", 19), ("62", 16), ("62", 19)]
        )
    )  # fmt: skip
    body = draw(st.text(DIGITS, min_size=length - len(first) - 1, max_size=length - len(first) - 1))
    digits = luhn_complete(first + body)
    layout = draw(st.sampled_from(["plain", "space", "dash", "amex"]))
    if layout == "amex" and length == 15:
        formatted = f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    elif layout in ("space", "dash"):
        sep = " " if layout == "space" else "-"
        formatted = sep.join(digits[i : i + 4] for i in range(0, length, 4))
    else:
        formatted = digits
    return formatted, digits


@st.composite
def phone_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A phone number as (formatted, digits): E.164 (spaced or not) or a local layout."""
    kind = draw(st.sampled_from(["e164", "e164_spaced", "nanp", "nanp_dashed", "uk"]))
    if kind.startswith("e164"):
        country = draw(st.sampled_from(["1", "33", "44", "49", "234", "971"]))
        subscriber = draw(st.text(DIGITS, min_size=8, max_size=15 - len(country)))
        digits = country + subscriber
        if kind == "e164":
            return "+" + digits, digits
        rest = " ".join(subscriber[i : i + 3] for i in range(0, len(subscriber), 3))
        return f"+{country} {rest}", digits
    area = draw(st.sampled_from("23456789")) + draw(st.text(DIGITS, min_size=2, max_size=2))
    exchange = draw(st.sampled_from("23456789")) + draw(st.text(DIGITS, min_size=2, max_size=2))
    line = draw(st.text(DIGITS, min_size=4, max_size=4))
    if kind == "nanp":
        return f"({area}) {exchange}-{line}", area + exchange + line
    if kind == "nanp_dashed":
        return f"{area}-{exchange}-{line}", area + exchange + line
    uk = "07" + draw(st.text(DIGITS, min_size=3, max_size=3))
    tail = draw(st.text(DIGITS, min_size=6, max_size=6))
    return f"{uk} {tail}", uk + tail


_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
emails = st.builds(
    lambda local, sep, more, domain, tld: f"{local}{sep}{more}@{domain}.{tld}",
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12),
    st.sampled_from(["", ".", "+", "_", "-"]),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
    _LABEL,
    st.sampled_from(["com", "io", "co.uk", "de", "example"]),
)
_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
bearer_tokens = st.builds(lambda t: f"Bearer {t}", st.text(_TOKEN_CHARS, min_size=16, max_size=48))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


jwts = st.builds(
    lambda sub, sig: f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': sub})}.{sig}",
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=16, max_size=43),
)
cvvs = st.text(DIGITS, min_size=3, max_size=4)


def _secret_forms(secret: str | tuple[str, str]) -> list[str]:
    """The strings that must not appear in any output: the secret as written and its digits."""
    if isinstance(secret, tuple):
        return [secret[0], secret[1]]
    return [secret]


secrets = st.one_of(
    card_numbers(),
    phone_numbers(),
    emails,
    bearer_tokens,
    jwts,
)


def _shown(secret: str | tuple[str, str]) -> str:
    return secret[0] if isinstance(secret, tuple) else secret


def _assert_absent(secret: str | tuple[str, str], output: str) -> None:
    for form in _secret_forms(secret):
        assert form not in output


@PROPERTY_SETTINGS
@given(secret=secrets, key=st.sampled_from(["note", "detail", "data", "x"]))
def test_secret_never_survives_in_log_fields(secret: str | tuple[str, str], key: str) -> None:
    """A secret in a message, a field or a nested field is masked in the rendered line."""
    event = {
        "event": f"processing {_shown(secret)} now",
        key: _shown(secret),
        "nested": {"items": [{"value": f"x {_shown(secret)} y"}]},
    }
    redacted = RedactingProcessor(REDACTOR)(None, "info", event)
    rendered = structlog.processors.JSONRenderer()(None, "info", redacted)
    _assert_absent(secret, rendered)
    assert REDACTOR.redact_event(json.loads(rendered)) == json.loads(rendered)  # idempotent


@PROPERTY_SETTINGS
@given(secret=secrets)
def test_secret_never_survives_in_nested_json_body(secret: str | tuple[str, str]) -> None:
    """A secret deep inside a JSON body, or inside a JSON string inside it, is masked."""
    inner = json.dumps({"comment": _shown(secret)})
    body = json.dumps({"order": {"lines": [{"note": _shown(secret), "raw": inner}], "amount": 1000}})
    _assert_absent(secret, REDACTOR.summarize_body(body.encode(), "application/json"))
    _assert_absent(secret, REDACTOR.redact_text(body))


@PROPERTY_SETTINGS
@given(secret=secrets, field=st.sampled_from(["note", "description", "metadata[comment]"]))
def test_secret_never_survives_in_form_body_or_query(secret: str | tuple[str, str], field: str) -> None:
    """A secret in a form body or a URL query string is masked, encoded or not."""
    encoded = urllib.parse.urlencode({field: _shown(secret), "amount": "100"})
    summary = REDACTOR.summarize_body(encoded, "application/x-www-form-urlencoded")
    _assert_absent(secret, urllib.parse.unquote_plus(summary))
    url = REDACTOR.redact_url(f"https://api.example.com/v1/charges?{encoded}")
    _assert_absent(secret, urllib.parse.unquote_plus(url))


@PROPERTY_SETTINGS
@given(secret=secrets)
def test_secret_never_survives_in_exception_text(secret: str | tuple[str, str]) -> None:
    """A secret in an exception message is masked in the formatted traceback."""
    try:
        raise ValueError(f"gateway refused {_shown(secret)}")
    except ValueError:
        text = traceback.format_exc()
    _assert_absent(secret, REDACTOR.redact_event({"event": "failed", "exception": text})["exception"])


@PROPERTY_SETTINGS
@given(cvv=cvvs, key=st.sampled_from(["cvv", "cvc", "CVC", "card[cvc]", "cvv2", "security_code"]))
def test_cvv_under_its_key_is_always_masked(cvv: str, key: str) -> None:
    """CVVs under cvv/cvc keys are masked in log fields, JSON bodies, forms and queries."""
    assert REDACTOR.redact_event({key: cvv})[key] == REDACTED
    assert REDACTOR.redact_event({key: int(cvv)})[key] == REDACTED
    body = json.loads(REDACTOR.summarize_body(json.dumps({"card": {key: cvv}}), "application/json"))
    assert body["card"][key] == REDACTED
    form = REDACTOR.summarize_body(urllib.parse.urlencode({key: cvv}), "application/x-www-form-urlencoded")
    assert f"={REDACTED}" in form
    assert cvv not in form


@PROPERTY_SETTINGS
@given(secret=secrets, card=card_numbers())
def test_secret_never_reaches_exported_otlp_bytes(secret: str | tuple[str, str], card: tuple[str, str]) -> None:
    """Span names, attributes, events and URLs are redacted before OTLP encoding."""
    inner = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(inner, REDACTOR)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(f"charge {_shown(secret)}") as span:
        span.set_attribute("url.full", f"https://x.io/p?card={urllib.parse.quote(card[0])}&n=1")
        span.set_attribute("app.note", f"for {_shown(secret)}")
        span.add_event("retry", {"detail": _shown(secret)})
        span.record_exception(ValueError(f"bad {_shown(secret)}"))
    provider.shutdown()
    payload = encode_spans(inner.get_finished_spans()).SerializeToString()
    for form in [*_secret_forms(secret), *_secret_forms(card)]:
        assert form.encode() not in payload


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secrets)
def test_secret_never_reaches_stdout_or_otlp_log_bytes(secret: str | tuple[str, str]) -> None:
    """Through the configured pipeline: JSON lines and encoded OTLP log records hold masks only."""
    shown = _shown(secret)
    with capture(env="dev", log_level=logging.DEBUG) as captured:
        log = structlog.get_logger("checkout")
        log.info(f"paid with {shown}", note=shown, nested={"lines": [{"comment": shown}]})
        try:
            raise ValueError(f"gateway refused {shown}")
        except ValueError:
            log.exception("charge failed")
        records = captured.log_records()
    assert len(records) == 2
    payload = encode_logs(records).SerializeToString()
    for form in _secret_forms(secret):
        assert form not in captured.text()
        assert form.encode() not in payload
