"""Text helpers shared by the redaction modules (a leaf: it imports nothing from the package).

Also the marker type of a value that is already redacted, so that the next boundary it crosses
(the log line carrying a gateway summary, the span exporter) does not scan it again.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

REDACTED = "[REDACTED]"
"""The fixed marker that replaces passwords, tokens, JWTs and other secrets."""


class Redacted(str):
    """A string otel-logkit has already redacted (a body or parameter summary): not scanned again."""

    __slots__ = ()


class TextRedactor(Protocol):
    """What body and URL summaries need from a redactor."""

    max_bytes: int
    scan_limit: int

    def redact_text(self, text: str) -> str:
        """Mask every secret found in ``text``."""
        ...

    def redact_value(self, value: Any, key: str | None = None, *, sms: bool = False) -> Any:
        """Redact one value as if stored under ``key``."""
        ...


def loads(text: str) -> Any:
    """``json.loads``, or ``None`` for text that is not JSON (or too deep to parse)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def dumps(value: Any) -> str:
    """Compact JSON of redacted data, or the redaction marker when it cannot be serialized."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        return REDACTED


def cut_for_scan(text: str, limit: int) -> str:
    """Cut an oversized string before scanning it, dropping a trailing partial token.

    A secret split by the cut (``4242 4242 42``) would no longer match its detector, so the last
    token-like run (up to 80 characters) of the kept part is dropped too.
    """
    kept = text[:limit]
    tail = kept[-80:]
    index = len(tail)
    while index > 0 and (tail[index - 1].isalnum() or tail[index - 1] in "@.+-_()%= "):
        index -= 1
    return kept[: len(kept) - len(tail) + index]


def cut_bytes(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes (never through a character), no marker."""
    if len(text) * 4 <= max_bytes:
        return text
    return text.encode("utf-8", "surrogatepass")[:max_bytes].decode("utf-8", "ignore")


def truncate_bytes(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes, ending with a truncation marker."""
    if len(text) * 4 <= max_bytes:
        return text
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    kept = encoded[:max_bytes].decode("utf-8", "ignore")
    return f"{kept}…[truncated {len(encoded) - max_bytes} bytes]"
