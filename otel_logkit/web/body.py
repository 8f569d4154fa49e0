"""The ``request_body`` summary of an error line: captured as the app reads, redacted, truncated."""

from __future__ import annotations

from typing import Protocol

_SLACK = 64
"""Bytes kept beyond the summary limit so that a secret straddling the cut is redacted whole."""

_MULTIPART = "multipart/"


class BodySummarizer(Protocol):
    """What the error line needs from :class:`otel_logkit.redact.Redactor`."""

    def summarize_body(
        self, body: bytes | str | None, content_type: str | None, *, sms: bool = False, size: int | None = None
    ) -> str:
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
        multipart = (content_type or "").lower().startswith(_MULTIPART)
        self._keep = 0 if multipart else limit + _SLACK

    def feed(self, chunk: bytes) -> None:
        """Account for one chunk the app has just received."""
        self.size += len(chunk)
        room = self._keep - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]

    def summary(self, redactor: BodySummarizer) -> str:
        """The redacted summary (the redactor's one format for every boundary), empty when nothing was read."""
        if self.size == 0:
            return ""
        return redactor.summarize_body(bytes(self.kept), self.content_type, size=self.size)
