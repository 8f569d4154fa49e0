"""configure() into memory for web tests, and helpers to read the JSON lines back."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_logkit
from otel_logkit import _failsafe, setup, web


@dataclass
class Captured:
    """The JSON lines written and the spans exported while a test ran."""

    stream: io.StringIO
    spans: InMemorySpanExporter

    def lines(self) -> list[dict[str, Any]]:
        """Every line written so far, parsed (each must be one JSON object)."""
        return [json.loads(line) for line in self.stream.getvalue().split("\n") if line.strip()]

    def access(self) -> list[dict[str, Any]]:
        """The access lines."""
        return [line for line in self.lines() if line.get("logger") == web.ACCESS_LOGGER]

    def errors(self) -> list[dict[str, Any]]:
        """The unhandled-exception lines."""
        return [line for line in self.lines() if line.get("logger") == web.ERROR_LOGGER]

    def by_request(self, request_id: str) -> list[dict[str, Any]]:
        """Lines carrying ``request_id``."""
        return [line for line in self.lines() if line.get("request_id") == request_id]

    def server_spans(self) -> list[Any]:
        """Finished SERVER spans."""
        return [span for span in self.spans.get_finished_spans() if span.kind.name == "SERVER"]


def configured(*, instrument: bool = True, **overrides: Any) -> Iterator[Captured]:
    """Configure otel-logkit into memory, yield, then undo everything (fixture body).

    Args:
        instrument: instrument the frameworks and install the web middleware.
        overrides: ``Settings`` fields.
    """
    stream = io.StringIO()
    exporter = InMemorySpanExporter()
    settings = {"env": "test", "logs_exporter": "none", "traces_exporter": "none", **overrides}
    otel_logkit.configure(stream=stream, span_exporter=exporter, instrument=instrument, **settings)
    try:
        yield Captured(stream, exporter)
    finally:
        setup.reset()
        web.uninstall()
        _failsafe.reset()
