"""The ``request_body`` summary of an error line: captured as the app reads, redacted, truncated."""

from __future__ import annotations

import re
from typing import Protocol

_SLACK = 64
"""Bytes kept beyond the summary limit so that a secret straddling the cut is redacted whole."""

_TEXTUAL = ("json", "text/", "x-www-form-urlencoded", "xml", "graphql", "javascript", "yaml")

# The fallback used when no redactor is configured: deliberately blunt (any 13-19 digit run and
# the value of any key that merely contains a sensitive word), so that it can only over-redact.
_SENSITIVE_KEY = (
    r"[\w.\[\]-]*(?:passw|passwd|pwd|secret|token|api_?key|auth|cookie|session|card|pan|cvv|cvc"
    r"|otp|pin|ssn|iban|email|phone)[\w.\[\]-]*"
)
_JSON_PAIR = re.compile(
    rf'("{_SENSITIVE_KEY}"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}}\]\s]+)',
    re.IGNORECASE,
)
_FORM_PAIR = re.compile(rf"((?:^|[&;?\s]){_SENSITIVE_KEY}=)([^&;\s]*)", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,}")


class BodySummarizer(Protocol):
    """What the error line needs from :class:`otel_logkit.redact.Redactor`."""

    def summarize_body(self, body: bytes | str | None, content_type: str | None) -> str:
        """A redacted summary of a request or response body."""
        ...


class BodyCapture:
    """Keeps the first bytes of the request body as the app reads it, and counts the rest.

    Never reads ahead of the app and never holds more than ``limit`` plus a small slack, so an
    upload is counted, not kept. Multipart bodies are only counted: their summary is kind and size.

    Args:
        limit: ``LOGKIT_BODY_SUMMARY_MAX``.
        content_type: the request's ``Content-Type`` header, if any.
    """

    __slots__ = ("_keep", "content_type", "kept", "size")

    def __init__(self, limit: int, content_type: str | None) -> None:
        self.content_type = content_type
        self.kept = bytearray()
        self.size = 0
        self._keep = 0 if _kind(content_type) == "multipart" else limit + _SLACK

    def feed(self, chunk: bytes) -> None:
        """Account for one chunk the app has just received."""
        self.size += len(chunk)
        room = self._keep - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    def summary(self, limit: int, redactor: BodySummarizer | None) -> str:
        """The redacted summary, at most ``limit`` bytes of text plus a size note when cut."""
        if self.size == 0:
            return ""
        kind = _kind(self.content_type)
        media = (self.content_type or "application/octet-stream").split(";", 1)[0].strip()[:64]
        if kind == "multipart":
            return f"<{media}, {self.size} bytes>"
        body = bytes(self.kept)
        if kind == "binary" or _is_binary(body):
            return f"<binary {media}, {self.size} bytes>"
        if redactor is not None:
            text = redactor.summarize_body(body, self.content_type)
        else:
            text = redact_fallback(body.decode("utf-8", errors="replace"))
        cut = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
        if len(cut) < len(text) or self.size > len(body):
            return f"{cut}... ({self.size} bytes)"
        return cut


def redact_fallback(text: str) -> str:
    """Minimal redaction when no redactor is configured: card-like digit runs and sensitive keys."""
    text = _JSON_PAIR.sub(r'\1"[REDACTED]"', text)
    text = _FORM_PAIR.sub(r"\1[REDACTED]", text)
    return _DIGIT_RUN.sub("[REDACTED]", text)


def _kind(content_type: str | None) -> str:
    if not content_type:
        return "unknown"
    lowered = content_type.lower()
    if lowered.startswith("multipart/"):
        return "multipart"
    if any(marker in lowered for marker in _TEXTUAL):
        return "text"
    return "binary"


def _is_binary(body: bytes) -> bool:
    if b"\x00" in body:
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut by the capture window is not binary.
        return error.start < len(body) - 3
    return False
