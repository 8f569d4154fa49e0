"""The redaction boundaries: the structlog processor and the span exporter wrapper."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_logkit.redact import REDACTED, RedactingProcessor, RedactingSpanExporter, Redactor


class _RecordingExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.calls.append(f"flush {timeout_millis}")
        return True


def test_processor_redacts_before_rendering() -> None:
    """In a structlog chain, the rendered line carries masks only."""
    chain = [RedactingProcessor(Redactor()), structlog.processors.JSONRenderer()]
    event: dict[str, object] = {"event": "paid by jo@x.io", "password": "p", "request_id": "r1"}
    for processor in chain:
        event = processor(None, "info", event)  # type: ignore[assignment,arg-type]
    assert f'{{"event": "paid by ***@x.io", "password": "{REDACTED}", "request_id": "r1"}}' == event


def test_exporter_redacts_copy_and_leaves_live_span_alone() -> None:
    """The exported span is redacted; the span other processors see is not modified."""
    seen_by_others = InMemorySpanExporter()
    recording = _RecordingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(seen_by_others))
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(recording, Redactor())))
    with provider.get_tracer("t").start_as_current_span("GET /users/jo@x.io") as span:
        span.set_attribute("url.full", "https://x.io/u?api_key=K&page=2")
        span.set_attribute("http.response.status_code", 200)
        span.add_event("note", {"card": "4242424242424242"})
        span.set_status(Status(StatusCode.ERROR, "refused for jo@x.io"))
    exported = recording.spans[0]
    assert exported.name == "GET /users/***@x.io"
    assert f"https://x.io/u?api_key={REDACTED}&page=2" == exported.attributes["url.full"]
    assert exported.attributes["http.response.status_code"] == 200
    assert exported.events[0].attributes["card"] == "****4242"
    assert exported.status.description == "refused for ***@x.io"
    assert exported.context == seen_by_others.get_finished_spans()[0].context
    assert seen_by_others.get_finished_spans()[0].attributes["url.full"] == "https://x.io/u?api_key=K&page=2"


def test_exporter_passes_clean_spans_through_unchanged() -> None:
    """A span with nothing to redact is exported as the very same object."""
    recording = _RecordingExporter()
    exporter = RedactingSpanExporter(recording, Redactor())
    span = ReadableSpan(name="GET /health", attributes={"http.route": "/health"})
    exporter.export([span])
    assert span is recording.spans[0]


def test_exporter_passes_flush_and_shutdown_through() -> None:
    """``force_flush`` and ``shutdown`` reach the wrapped exporter."""
    recording = _RecordingExporter()
    exporter = RedactingSpanExporter(recording, Redactor())
    assert exporter.force_flush(1234)
    exporter.shutdown()
    assert recording.calls == ["flush 1234", "shutdown"]
