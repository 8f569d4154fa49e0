"""The redaction engine: key rules and value detectors applied to log events, values and text.

Design (after logfire's scrubbing): rules are data (``keys.py``, ``detectors.py``), users add keys
(``LOGKIT_REDACT_KEYS``) and detectors, a safe-key allowlist avoids false positives, and the
engine recurses into nested data and JSON strings with bounded depth, width and length. The hot
path, a clean log line, costs one cached dict lookup per key and, per string, a gate that runs in
C (``bytes.translate`` and ``in``); the regexes only run on strings that pass the gate.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from otel_logkit._event_keys import PRIVATE_KEYS
from otel_logkit.redact import bodies
from otel_logkit.redact.detectors import (
    CompiledDetector,
    Detector,
    any_in,
    count_digits,
    default_detectors,
    is_card_number,
    mask_card,
    registered_detectors,
)
from otel_logkit.redact.keys import QUERY_ATTRIBUTE, URL_ATTRIBUTES, KeyKind, classify_key, has_promised_shape
from otel_logkit.redact.masks import mask_for_key
from otel_logkit.redact.text import REDACTED, Redacted, cut_for_scan, truncate_bytes
from otel_logkit.redact.text import dumps as _dumps
from otel_logkit.redact.text import loads as _loads

if TYPE_CHECKING:
    from otel_logkit.config import Settings

_MIN_SECRET_LEN = 6  # the shortest value a detector can match ("a@b.io")
_SAFE, _NORMAL = KeyKind.SAFE, KeyKind.NORMAL
# structlog's and stdlib's bookkeeping (which later processors need with their types), and
# otel-logkit's private keys: never secrets, never rendered (a 19-digit ns timestamp would be
# checked as a card number on every line).
_EVENT_PASSTHROUGH = (
    frozenset({"exc_info", "stack_info", "_record", "_from_structlog", "positional_args"}) | PRIVATE_KEYS
)
# structlog's flags: passed through while they are flags (True, an exc_info tuple), scanned as
# data otherwise (``stack_info="..."`` is rendered as it is).
_FLAG_KEYS = frozenset({"exc_info", "stack_info"})
_FLAG_TYPES = frozenset({bool, type(None), tuple})
_KEY_CACHE_MAX = 4096
_CARD_INT_MIN = 10**12
_CLEAN_CACHE_MAX = 4096
_CLEAN_CACHE_LEN = 256


_MISSING = object()
_CACHEABLE = frozenset({str, int, float, bool})
_CACHED_LENGTH = 256
_CACHE_LIMIT = 8192


class Redactor:
    """Masks secrets and personal data in log events, span attributes, URLs and bodies.

    Args:
        extra_keys: more key names to treat as secrets (``LOGKIT_REDACT_KEYS``), case-insensitive.
        max_bytes: the size of a body or parameter summary (``LOGKIT_BODY_SUMMARY_MAX``).
        detectors: more value detectors for this redactor only (see also ``register_detector``).
        max_depth: nesting depth beyond which values are replaced by a truncation marker.
        max_items: items kept per mapping or sequence; the rest is summarised as a count.
        scan_limit: characters of one string that are scanned; longer strings are cut first.
    """

    def __init__(
        self,
        extra_keys: Iterable[str] = (),
        *,
        max_bytes: int = 512,
        detectors: Iterable[Detector] = (),
        max_depth: int = 32,
        max_items: int = 1000,
        scan_limit: int = 256 * 1024,
    ) -> None:
        self.extra_keys = frozenset(key.lower() for key in extra_keys)
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_items = max_items
        self.scan_limit = max(scan_limit, 4 * max_bytes)
        self.detectors: tuple[Detector, ...] = (
            *default_detectors(self.extra_keys),
            *registered_detectors(),
            *detectors,
        )
        self._compiled = tuple(CompiledDetector(d) for d in self.detectors)
        # Span attributes repeat from span to span (scheme, method, route, host, peer...): the
        # result for a short (key, value) pair is kept, in a bounded dict cleared when full.
        self._attribute_cache: dict[tuple[str, type, Any], Any] = {}
        # The cheap gate in front of all detectors: a string containing none of these
        # substrings and fewer than _min_digits digits cannot match any of them.
        gated = [d for d in self.detectors if d.triggers or d.keywords or d.min_digits]
        self._always_scan = len(gated) < len(self.detectors)
        triggers = {t for d in gated for t in d.triggers}
        # Triggers starting with ASCII punctuation are checked as that one byte (in C, by
        # bytes.translate); the rest (eyJ, earer) by ``in``. Either way the gate only widens.
        special = {t[0] for t in triggers if t[0].isascii() and not t[0].isalnum()}
        self._multi_triggers = tuple(sorted(t for t in triggers if t[0] not in special))
        interesting = {ord(c) for c in special} | set(range(48, 58))
        self._boring = bytes(i for i in range(256) if i not in interesting)
        keyword_only = [d for d in gated if not d.triggers and d.keywords]
        self._always_scan |= bool(keyword_only)
        digit_only = [d.min_digits for d in gated if not d.triggers and not d.keywords]
        self._min_digits = min(digit_only, default=1 << 30)
        self._kinds: dict[Any, KeyKind] = {}
        self._sms_kinds: dict[Any, KeyKind] = {}
        # Messages repeat from line to line: remembering the short strings found clean saves
        # the scan (a set lookup uses the hash the str object already caches).
        self._clean: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """Build the redactor configured by ``LOGKIT_REDACT_KEYS`` and ``LOGKIT_BODY_SUMMARY_MAX``."""
        return cls(settings.redact_keys, max_bytes=settings.body_summary_max)

    # -- keys ---------------------------------------------------------------------------------

    def key_kind(self, key: object, *, sms: bool = False) -> KeyKind:
        """What ``key`` says about its value (cached; keys repeat from line to line)."""
        cache = self._sms_kinds if sms else self._kinds
        kind = cache.get(key)
        if kind is None:
            kind = classify_key(key if isinstance(key, str) else str(key), self.extra_keys, sms=sms)
            if len(cache) >= _KEY_CACHE_MAX:
                cache.clear()
            cache[key] = kind
        return kind

    # -- public API ---------------------------------------------------------------------------

    def redact_event(  # noqa: PLR0912 - the hot path, inlined on purpose
        self, event_dict: MutableMapping[str, Any], *, stringify: bool = True, trusted: frozenset[str] = frozenset()
    ) -> MutableMapping[str, Any]:
        """Redact a structlog event dict in place (and return it), just before rendering.

        Secret keys are masked and every string is searched once by all value detectors;
        values under allow-listed keys are skipped only when they have the shape their key
        promises. Nested data is walked with the same rules.

        Args:
            event_dict: the event, changed in place.
            trusted: keys whose values otel-logkit itself set (its timestamp, level, trace ids:
                user values under those names were moved aside first), left alone.
            stringify: replace objects the renderer would print with ``repr()`` by that text,
                redacted (what is rendered is what was redacted). Off, an object is kept as it
                is unless its text holds a secret (for ``capture_logs`` entries in tests).
        """
        kinds = self._kinds
        is_clean = self._is_clean
        clean = self._clean
        changes: list[tuple[Any, Any]] = []
        for key, value in event_dict.items():
            if key in trusted or (key in _EVENT_PASSTHROUGH and (key not in _FLAG_KEYS or type(value) in _FLAG_TYPES)):
                continue
            kind = kinds.get(key)
            if kind is None:
                kind = self.key_kind(key)
            value_type = type(value)
            if value_type is Redacted:
                continue
            if kind is _SAFE:
                # Kept as is: a number or flag, or a string of the shape the key promises. A
                # clean string is left to the fast check below; anything else is searched.
                if value is None or value_type in _PLAIN:
                    continue
                if value_type is str and not is_clean(value) and has_promised_shape(str(key), value):
                    continue
                kind = _NORMAL
            if kind is _NORMAL:
                if value_type is str:
                    if len(value) < _MIN_SECRET_LEN or value in clean or is_clean(value):
                        continue
                elif value_type is int:
                    if value < _CARD_INT_MIN:
                        continue
                elif value is None or value_type is float or value_type is bool:
                    continue
            new = self._value(value, kind, 0, False, stringify)
            if new is not value:
                changes.append((key, new))
        for key, new in changes:
            event_dict[key] = new
        return event_dict

    def redact_text(self, text: str) -> str:
        """Mask every secret the value detectors find in ``text`` (JSON text is parsed first)."""
        return self._text(text, 0, False)

    def redact_value(self, value: Any, key: str | None = None, *, sms: bool = False) -> Any:
        """Redact one value as if it were stored under ``key`` (``None``: detectors only)."""
        kind = _NORMAL if key is None else _checked(self.key_kind(key, sms=sms), key, value)
        return self._value(value, kind, 0, sms)

    def redact_mapping(self, mapping: Mapping[Any, Any], *, sms: bool = False) -> dict[Any, Any]:
        """Redact a mapping (parameters, headers, attributes) into a new dict."""
        return self._mapping(mapping, 0, sms, _NORMAL)

    def redact_attributes(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Redact span or log record attributes, keeping OpenTelemetry's value types valid.

        URL attributes (``url.full``, ``http.url``, ...) are redacted as URLs; sequences stay
        homogeneous sequences of strings when anything in them is masked.
        """
        result: dict[str, Any] = {}
        cache = self._attribute_cache
        for key, value in attrs.items():
            kind_of_value = type(value)
            cacheable = kind_of_value in _CACHEABLE and (kind_of_value is not str or len(value) <= _CACHED_LENGTH)
            if cacheable:
                cached = cache.get((key, kind_of_value, value), _MISSING)
                if cached is not _MISSING:
                    result[key] = cached
                    continue
            new = self._attribute(key, value)
            if cacheable:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[(key, kind_of_value, value)] = new
            result[key] = new
        return result

    def _attribute(self, key: str, value: Any) -> Any:
        """One attribute value, redacted, with OpenTelemetry's value types kept valid."""
        if key in URL_ATTRIBUTES and isinstance(value, str) and type(value) is not Redacted:
            # url.query holds a bare query string (no "?"): as a URL it would parse as a path.
            return self.redact_query(value) if key == QUERY_ATTRIBUTE else self.redact_url(value)
        new = self._value(value, _checked(self.key_kind(key), key, value), 0, False)
        if isinstance(new, list):
            new = tuple(v if isinstance(v, str | bool | int | float) else str(v) for v in new)
            if len({type(v) for v in new}) > 1:
                new = tuple(str(v) for v in new)
        elif new is not value and not isinstance(new, str | bool | int | float | tuple):
            new = str(new)
        return new

    def redact_url(self, url: str) -> str:
        """Mask credentials, secret query parameters and detected values in a URL."""
        return bodies.redact_url(self, url)

    def redact_query(self, query: str, *, sms: bool = False) -> str:
        """Redact a query string or form body (``a=1&card[number]=...``) by key and by value."""
        return bodies.redact_query(self, query, sms=sms)

    def summarize_body(
        self, body: bytes | str | None, content_type: str | None, *, sms: bool = False, size: int | None = None
    ) -> str:
        """A redacted, truncated summary of an HTTP body, safe to log and to put on a span.

        JSON, form and query bodies are redacted by key and value; multipart and binary bodies
        are described by kind and size only. The result is at most ``max_bytes`` UTF-8 bytes
        plus a truncation marker; a 10 MB or 10,000-deep body costs bounded time.

        Args:
            body: the raw body, as sent or received.
            content_type: its ``Content-Type`` header, if known.
            sms: apply the SMS gateway rules (recipient masked, message reduced to its length).
            size: the whole body's size when ``body`` is only its first bytes (a capture).
        """
        return Redacted(bodies.summarize_body(self, body, content_type, sms=sms, size=size))

    def summarize_params(self, params: Mapping[str, Any] | None, *, sms: bool = False) -> str:
        """Redacted, truncated JSON of call parameters (for gateway spans and log lines)."""
        if not params:
            return ""
        redacted = self._mapping(params, 0, sms, _NORMAL)
        return Redacted(truncate_bytes(_dumps(redacted), self.max_bytes))

    # -- recursion ----------------------------------------------------------------------------

    def _value(self, value: Any, kind: KeyKind, depth: int, sms: bool, stringify: bool = True) -> Any:  # noqa: PLR0911 - one flat dispatch on type
        if kind is _SAFE or type(value) is Redacted:
            return value  # callers decide by the value's shape before passing SAFE
        if kind is not _NORMAL:
            return self._masked(value, kind, depth, sms)
        value_type = type(value)
        if value_type is str:
            return self._text(value, depth, sms)
        if value_type is int:
            return mask_card(str(value)) if value >= _CARD_INT_MIN and is_card_number(str(value)) else value
        if value is None or value_type is float or value_type is bool:
            return value
        if depth >= self.max_depth:
            return "[TRUNCATED: nested too deep]"
        if isinstance(value, Mapping):
            return self._mapping(value, depth + 1, sms, _NORMAL, stringify)
        if isinstance(value, list | tuple | set | frozenset):
            return self._sequence(value, _NORMAL, depth + 1, sms, stringify)
        if isinstance(value, bytes | bytearray):
            text = bytes(value[: self.scan_limit]).decode("utf-8", "replace")
            redacted = self._text(text, depth, sms)
            return value if redacted == text and len(value) <= self.scan_limit else redacted
        if isinstance(value, int | float):  # int and float subclasses (IntEnum, numpy scalars)
            return self._value(value.__index__() if isinstance(value, int) else float(value), kind, depth, sms)
        return self._other(value, depth, sms, stringify)

    def _other(self, value: Any, depth: int, sms: bool, stringify: bool) -> Any:
        """An object of another type: redact the text the renderer prints for it."""
        rendered = as_rendered(value)
        if rendered is not value and not isinstance(rendered, str):
            return self._value(rendered, _NORMAL, depth + 1, sms, stringify)
        text = rendered if isinstance(rendered, str) else safe_repr(value)
        redacted = self._text(text, depth, sms)
        if not stringify and redacted == text:
            return value
        return redacted

    def _text(self, text: str, depth: int, sms: bool) -> str:
        if len(text) < _MIN_SECRET_LEN:
            return text
        if len(text) > self.scan_limit:
            kept = cut_for_scan(text, self.scan_limit)
            return self._scan(kept) + f"…[truncated {len(text) - len(kept)} chars]"
        if self._is_clean(text):
            return text
        if text[0] in "{[" and depth < self.max_depth:
            parsed = _loads(text)
            if isinstance(parsed, dict | list):
                redacted = self._value(parsed, _NORMAL, depth, sms)
                return text if redacted == parsed else _dumps(redacted)
        return self._scan(text)

    def _is_clean(self, text: str) -> bool:
        """``True`` when no detector can match ``text``; short clean strings are remembered."""
        if len(text) < _MIN_SECRET_LEN or text in self._clean:
            return True
        if len(text) > self.scan_limit or self._maybe_secret(text):
            return False
        if len(text) <= _CLEAN_CACHE_LEN:
            if len(self._clean) >= _CLEAN_CACHE_MAX:
                self._clean.clear()
            self._clean.add(text)
        return True

    def _maybe_secret(self, text: str) -> bool:
        """The cheap gate: ``False`` means no detector can match ``text``."""
        if self._always_scan:
            return True
        rest = text.encode("utf-8", "surrogatepass").translate(None, self._boring)
        if rest and (len(rest) >= self._min_digits or rest.translate(None, b"0123456789")):
            return True
        return any_in(self._multi_triggers, text)

    def _scan(self, text: str) -> str:
        """Run each detector whose gates ``text`` passes, in priority order."""
        digits = -1
        lowered: str | None = None
        for compiled in self._compiled:
            if compiled.min_digits:
                if digits < 0:
                    digits = count_digits(text)
                if digits < compiled.min_digits:
                    continue
            if compiled.triggers and not any_in(compiled.triggers, text):
                continue
            if compiled.keywords:
                if lowered is None:
                    lowered = text.lower()
                if not any_in(compiled.keywords, lowered):
                    continue
            replaced = compiled.sub(compiled.replace, text)
            if replaced != text:
                text, lowered = replaced, None
        return text

    def _mapping(
        self, mapping: Mapping[Any, Any], depth: int, sms: bool, inherited: KeyKind, stringify: bool = True
    ) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        kinds = self._sms_kinds if sms else self._kinds
        is_clean = self._is_clean
        clean = self._clean
        for count, (key, value) in enumerate(mapping.items()):
            if count >= self.max_items:
                result["[truncated]"] = f"{len(mapping) - count} more keys"
                break
            kind = kinds.get(key)
            if kind is None:
                kind = self.key_kind(key, sms=sms)
            if kind is _NORMAL and inherited is not _NORMAL:
                kind = inherited
            out_key = key
            if type(key) is str and len(key) >= _MIN_SECRET_LEN and key not in clean and not is_clean(key):
                out_key = self._scan(key)
            value_type = type(value)
            if kind is _SAFE:
                if value_type in _PLAIN or value is None:
                    result[out_key] = value
                    continue
                if value_type is not str or not has_promised_shape(str(key), value):
                    kind = _NORMAL
            # Inlined _is_plain_scalar / _is_clean: this loop runs once per key of every body.
            if kind is _SAFE or (
                kind is _NORMAL
                and (
                    value is None
                    or value_type is bool
                    or value_type is float
                    or (value_type is int and value < _CARD_INT_MIN)
                    or (value_type is str and (len(value) < _MIN_SECRET_LEN or value in clean or is_clean(value)))
                )
            ):
                result[out_key] = value
            else:
                result[out_key] = self._value(value, kind, depth, sms, stringify)
        return result

    def _sequence(
        self, values: Iterable[Any], kind: KeyKind, depth: int, sms: bool, stringify: bool = True
    ) -> list[Any]:
        result: list[Any] = []
        for count, item in enumerate(values):
            if count >= self.max_items:
                result.append("[truncated: more items]")
                break
            if kind is _NORMAL and (_is_plain_scalar(item) or (type(item) is str and self._is_clean(item))):
                result.append(item)
            else:
                result.append(self._value(item, kind, depth, sms, stringify))
        return result

    def _masked(self, value: Any, kind: KeyKind, depth: int, sms: bool) -> Any:
        """Mask a value stored under a sensitive key, keeping what helps debugging."""
        if value is None or isinstance(value, bool):
            return value
        if depth >= self.max_depth:
            return REDACTED
        if isinstance(value, Mapping):
            return self._mapping(value, depth + 1, sms, kind)
        if isinstance(value, list | tuple | set | frozenset):
            return self._sequence(value, kind, depth + 1, sms)
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return mask_for_key(kind, text)


def _checked(kind: KeyKind, key: Any, value: Any) -> KeyKind:
    """An allow-listed key's kind, unless ``value`` lacks the shape that key promises."""
    if kind is not _SAFE or value is None or type(value) in _PLAIN:
        return kind
    if type(value) is str and has_promised_shape(str(key), value):
        return kind
    return _NORMAL


_PLAIN = frozenset({int, float, bool})
"""Values under allow-listed keys kept as they are: an amount, a count, a status code, a flag."""


def as_rendered(value: Any) -> Any:
    """What the JSON renderer prints for ``value``: a JSON-native value, or ``value`` itself.

    Mirrors orjson's native types (datetimes as ISO 8601, UUIDs as text, enums by value,
    dataclasses as objects); anything else is rendered with ``repr()``.
    """
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        except Exception:  # noqa: BLE001 - a broken dataclass is rendered as text
            return safe_repr(value)
    return value


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a placeholder naming the type when ``__repr__`` itself raises."""
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break logging
        return f"<unrepresentable {type(value).__qualname__}: __repr__ raised {type(exc).__name__}>"
    return text if isinstance(text, str) else f"<unrepresentable {type(value).__qualname__}>"


def _is_plain_scalar(value: Any) -> bool:
    """None, bools, floats and ints too small to be card numbers: nothing to redact by value."""
    value_type = type(value)
    return value is None or value_type is bool or value_type is float or (value_type is int and value < _CARD_INT_MIN)
