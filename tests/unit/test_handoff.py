"""The export hand-off's pure parts: span round trip, framing, marshal-safe values."""

from __future__ import annotations

import marshal

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel_logkit.export_helper import FrameReader, HandedSpan
from otel_logkit.handoff import FLUSH, FRAME, LOGS, MAX_FRAME, SPANS, _frame, _marshal, span_tuple
from otel_logkit.logs.sink import plain
from otel_logkit.redact import Redacted
from otel_logkit.wire import encode_spans

RESOURCE = Resource({"service.name": "shop"})


def finished_spans() -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.tracer", "1.2", schema_url="https://opentelemetry.io/schemas/1.21.0")
    with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/orders/{id}")
        parent.set_attribute("tags", ("a", "b"))
        parent.set_attribute("ratio", 0.5)
        parent.add_event("cache miss", {"key": "orders:1", "size": 3})
        with tracer.start_as_current_span(
            "payment", kind=SpanKind.CLIENT, links=[Link(parent.get_span_context(), {"why": "retry"})]
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "declined"))
            child.record_exception(ValueError("declined"))
    return list(exporter.get_finished_spans())


def test_a_span_rebuilt_in_the_helper_encodes_to_the_same_bytes() -> None:
    """span_tuple -> marshal -> HandedSpan gives the very OTLP message of the original span."""
    spans = finished_spans()
    items = marshal.loads(_marshal([span_tuple(span) for span in spans]))  # noqa: S302 - our own bytes
    scopes = {}
    rebuilt = []
    for item in items:
        key = tuple(item[17])
        scope = scopes.setdefault(key, spans[0].instrumentation_scope)
        rebuilt.append(HandedSpan(item, spans[0].resource, scope))
    original = ExportTraceServiceRequest.FromString(encode_spans(spans))
    again = ExportTraceServiceRequest.FromString(encode_spans(rebuilt))
    assert again == original
    assert rebuilt[0].status.status_code is StatusCode.ERROR
    assert rebuilt[0].status.description == "declined"
    assert rebuilt[1].kind is SpanKind.SERVER


def test_frames_split_anywhere_are_reassembled() -> None:
    """Frames arrive in pipe-sized pieces: cut at every byte, the same frames come out."""
    stream = _frame(LOGS, _marshal([{"message": "a"}])) + _frame(SPANS, b"xyz") + _frame(FLUSH, b"")
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        frames = [*reader.feed(stream[:cut]), *reader.feed(stream[cut:])]
        assert [kind for kind, _ in frames] == [LOGS, SPANS, FLUSH]
        assert marshal.loads(frames[0][1]) == [{"message": "a"}]  # noqa: S302 - our own bytes
        assert frames[1][1] == b"xyz"


def test_a_corrupt_length_is_refused() -> None:
    """A length beyond any frame the app writes means the stream is broken: stop, never allocate it."""
    reader = FrameReader()
    with pytest.raises(ValueError, match="corrupt"):
        list(reader.feed(FRAME.pack(MAX_FRAME + 1, LOGS)))


class Odd:
    def __str__(self) -> str:
        return "odd object"


class Raising:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_marshal_refuses_are_sent_as_builtin_types() -> None:
    """Redacted (a str subclass), objects, sets and nested tuples become marshal-able built-ins."""
    event = {
        "message": Redacted("[body, 5 bytes]"),
        "obj": Odd(),
        "bad": Raising(),
        "tags": {"b"},
        "nested": {1: ("x", Odd())},
        "n": True,
    }
    decoded = marshal.loads(_marshal([event]))[0]  # noqa: S302 - our own bytes
    assert decoded == {
        "message": "[body, 5 bytes]",
        "obj": "odd object",
        "bad": "<unprintable Raising>",
        "tags": ["b"],
        "nested": {"1": ["x", "odd object"]},
        "n": True,
    }
    assert type(decoded["message"]) is str
    assert plain(2**70) == 2**70


class ExitedHelper:
    """Stands for a helper process that has exited."""

    pid = 4242
    returncode = 1

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


def test_a_helper_that_keeps_dying_is_reported_once_per_interval() -> None:
    """One WARNING at the first exit; a crash loop adds nothing until the interval has passed,
    then one line with the exits and losses since."""
    from otel_logkit.config import Settings
    from otel_logkit.handoff import HelperChannel

    reports: list[tuple[str, str, dict]] = []
    channel = HelperChannel(
        Settings.from_env({}),
        RESOURCE,
        lambda level, message, fields: reports.append((level, message, fields)),
        logs=True,
        spans=False,
    )
    for _ in range(5):
        channel._appended = 3  # records handed to that helper, none settled
        channel._helper_gone(ExitedHelper())  # type: ignore[arg-type]
    assert len(reports) == 1
    assert reports[0][2]["exits"] == 1
    assert reports[0][2]["lost_records"] == 3
    channel._death_reports._last -= 601  # type: ignore[operator] # the interval has passed
    channel._appended = 2
    channel._helper_gone(ExitedHelper())  # type: ignore[arg-type]
    assert len(reports) == 2
    assert reports[1][2]["exits"] == 5
    assert reports[1][2]["lost_records"] == 14
    assert channel.restarts == 6
    assert channel.dropped_total == 17
