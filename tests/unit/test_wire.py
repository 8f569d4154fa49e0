"""The fast OTLP log encoder produces the same message as the SDK encoder."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.resources import Resource

from otel_logkit._event_keys import NS_KEY
from otel_logkit.logs.otlp import LogExportQueue
from otel_logkit.wire import encode_logs

CASES: list[dict[str, Any]] = [
    {"message": "plain", "level": "INFO"},
    {
        "message": "order created",
        "level": "WARNING",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "_logkit_sampled": True,
        "order_id": 1234,
        "negative": -5,
        "big": 2**62,
        "ratio": 0.25,
        "ok": False,
        "name": "caf\u00e9 \U0001f600",
        "raw": b"\x00\x01",
        "tags": ["a", 1, 2.5, True],
        "nested": {"a": {"b": [1, {"c": "d"}]}},
        "empty": "",
        "zero": 0,
    },
    {"message": "", "level": "CRITICAL", "obj": object()},
]


@pytest.mark.parametrize("event", CASES, ids=["plain", "rich", "object"])
def test_fast_encoder_matches_sdk_encoder(event: dict[str, Any]) -> None:
    """Parsing the fast bytes gives the SDK encoder's message, field for field."""
    queue = LogExportQueue(
        InMemoryLogRecordExporter(), Resource.create({"service.name": "svc", "n": 3}), schedule_delay=100
    )
    records = [queue._record({**event, NS_KEY: time.time_ns()}) for _ in range(3)]
    expected = sdk_encode_logs(records)
    actual = ExportLogsServiceRequest.FromString(encode_logs(records))
    assert expected == actual
    queue.shutdown(0.5)


def test_fast_span_encoder_matches_sdk_encoder() -> None:
    """Spans with parents, remote parents, events, links, status and trace state encode alike."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        TraceState,
    )

    from otel_logkit.wire import encode_spans

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t", "1.2")
    flags = TraceFlags(TraceFlags.SAMPLED)
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=flags, trace_state=TraceState([("vendor", "x")]))
    server = tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes={"http.route": "/"})
    with server, tracer.start_as_current_span("db", links=[Link(remote, {"why": "batch"})]) as child:
        child.add_event("retry", {"attempt": 2, "tags": ["a", "b"]})
        child.set_status(Status(StatusCode.ERROR, "boom \u00e9"))
    with trace.use_span(NonRecordingSpan(remote)), tracer.start_as_current_span("remote child", kind=SpanKind.CLIENT):
        pass
    spans = exporter.get_finished_spans()
    assert ExportTraceServiceRequest.FromString(encode_spans(spans)) == sdk_encode_spans(spans)
