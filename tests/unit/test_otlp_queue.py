"""LogExportQueue and ExportHealth: bounded hand-off, record conversion, reporting once."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from otel_logkit._event_keys import NS_KEY
from otel_logkit.logs.health import ExportHealth
from otel_logkit.logs.otlp import LogExportQueue, to_attribute

RESOURCE = Resource.create({"service.name": "svc"})
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"


class BlockingExporter(LogRecordExporter):
    """Blocks every export until released: a collector that does not answer."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported: list[ReadableLogRecord] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.release.wait(10)
        self.exported.extend(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class FailingExporter(LogRecordExporter):
    """Fails every export, like a collector that is down."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.calls += 1
        return LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def event(**fields: Any) -> dict[str, Any]:
    """A rendered-ready event dict."""
    return {"message": "order created", "level": "INFO", NS_KEY: 1_700_000_000_000_000_000, **fields}


def test_record_carries_span_context_severity_body_and_typed_attributes() -> None:
    """The SDK record has the span context set, severity, body = message, typed attributes."""
    exporter = InMemoryLogRecordExporter()
    queue = LogExportQueue(exporter, RESOURCE, schedule_delay=0.01)
    queue.put(event(trace_id=TRACE_ID, span_id=SPAN_ID, order_id=7, ok=True, ratio=0.5, tags=["a"], service="svc"))
    assert queue.force_flush(5)
    (readable,) = exporter.get_finished_logs()
    record = readable.log_record
    assert int(TRACE_ID, 16) == record.trace_id
    assert int(SPAN_ID, 16) == record.span_id
    assert record.severity_number == SeverityNumber.INFO
    assert record.severity_text == "INFO"
    assert record.body == "order created"
    assert record.timestamp == 1_700_000_000_000_000_000
    assert dict(record.attributes or {}) == {"order_id": 7, "ok": True, "ratio": 0.5, "tags": ["a"]}
    assert readable.resource.attributes["service.name"] == "svc"
    queue.shutdown(1)


def test_record_outside_span_has_no_span_context() -> None:
    """Without trace ids the record's trace_id/span_id are zero (unset)."""
    exporter = InMemoryLogRecordExporter()
    queue = LogExportQueue(exporter, RESOURCE, schedule_delay=0.01)
    queue.put(event())
    queue.force_flush(5)
    (readable,) = exporter.get_finished_logs()
    assert (readable.log_record.trace_id, readable.log_record.span_id) == (0, 0)
    queue.shutdown(1)


def test_full_queue_drops_and_counts_and_reports_once() -> None:
    """Past max_queue_size, records are dropped from export, counted, and reported in one call."""
    exporter = BlockingExporter()
    reports: list[int] = []
    queue = LogExportQueue(exporter, RESOURCE, max_queue_size=100, max_batch_size=10, report_drops=reports.append)
    for i in range(1000):
        queue.put(event(i=i))
    exporter.release.set()
    queue.shutdown(5)
    assert 1 == len(reports)
    assert queue.dropped_total == reports[0]
    assert queue.dropped_total + len(exporter.exported) == 1000
    assert queue.dropped_total >= 1000 - 100 - 10


def test_put_does_not_block_when_exporter_hangs() -> None:
    """A hanging exporter never blocks the logging thread."""
    exporter = BlockingExporter()
    queue = LogExportQueue(exporter, RESOURCE, max_queue_size=50, max_batch_size=10)
    done = threading.Event()

    def burst() -> None:
        for i in range(10_000):
            queue.put(event(i=i))
        done.set()

    thread = threading.Thread(target=burst)
    thread.start()
    assert done.wait(5)
    exporter.release.set()
    queue.shutdown(2)


def test_failures_reported_once_until_recovery() -> None:
    """ExportHealth writes one WARNING per outage and one INFO on recovery."""
    lines: list[tuple[str, str]] = []
    health = ExportHealth("http://c:4318", lambda level, message, fields: lines.append((level, message)))
    for _ in range(50):
        health.failed("logs", "refused")
        health.failed("traces", "refused")
    health.succeeded("logs")
    assert len(lines) == 1
    health.succeeded("traces")
    health.failed("logs", "refused")
    assert [level for level, _ in lines] == ["warning", "info", "warning"]


def test_failing_exporter_marks_health() -> None:
    """A failing exporter flips the queue to failing; shutdown with a dead endpoint is quick."""
    lines: list[str] = []
    health = ExportHealth("x", lambda level, message, fields: lines.append(level))
    queue = LogExportQueue(FailingExporter(), RESOURCE, schedule_delay=0.01, health=health)
    for i in range(20):
        queue.put(event(i=i))
    queue.force_flush(2)
    assert queue.failing
    assert lines == ["warning"]
    queue.shutdown(5)


def test_no_export_marker_skips_export() -> None:
    """Events marked _logkit_no_export are not queued."""
    exporter = InMemoryLogRecordExporter()
    queue = LogExportQueue(exporter, RESOURCE, schedule_delay=0.01)
    passed = queue(None, "info", event(_logkit_no_export=True))
    queue.force_flush(2)
    assert list(exporter.get_finished_logs()) == []
    assert "_logkit_no_export" not in passed
    queue.shutdown(1)


def test_to_attribute_keeps_types_and_stringifies_objects() -> None:
    """OTLP-typed values stay typed; others become text; nesting is bounded."""
    assert to_attribute({"a": (1, "x"), "b": "None"}) == {"a": [1, "x"], "b": "None"}
    assert to_attribute(2**71) == "2361183241434822606848"
    assert isinstance(to_attribute(object()), str)


class SlowExporter(LogRecordExporter):
    """Takes 20 ms per export and remembers each batch's size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.sizes.append(len(batch))
        threading.Event().wait(0.02)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_a_steady_trickle_is_exported_in_full_batches() -> None:
    """Records arriving while an export runs wait for a full batch or the delay, not a tiny export each."""
    exporter = SlowExporter()
    queue = LogExportQueue(exporter, RESOURCE, max_batch_size=50, schedule_delay=30.0)
    try:
        for index in range(230):  # about 10 records arrive during each export
            queue.put(event(message=f"line {index}"))
            threading.Event().wait(0.002)
        assert queue.force_flush(5)
    finally:
        queue.shutdown(1)
    assert 230 == sum(exporter.sizes)
    assert [50, 50, 50, 50] == exporter.sizes[:4]  # full batches while the trickle ran
    assert [30] == exporter.sizes[4:]  # the rest only when flushed


class _RefusingExporter(LogRecordExporter):
    """Raises for any batch holding a record whose body is ``"poison"`` (an encoder bug)."""

    def __init__(self) -> None:
        self.exported: list[ReadableLogRecord] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if any(r.log_record.body == "poison" for r in batch):
            raise ValueError("cannot encode")
        self.exported.extend(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_one_bad_record_never_drops_the_batch_nor_reads_as_collector_failure() -> None:
    """The encoder refusing one record costs that record only, counted; export health stays green."""
    from otel_logkit import _failsafe

    reports: list[tuple[str, str]] = []
    health = ExportHealth("http://127.0.0.1:4318", lambda level, message, fields: reports.append((level, message)))
    exporter = _RefusingExporter()
    queue = LogExportQueue(exporter, RESOURCE, health=health)
    previous, _failsafe.raise_errors = _failsafe.raise_errors, False
    try:
        for body in ("a", "poison", "b"):
            queue.put(event(message=body))
        assert queue.force_flush(5)
    finally:
        _failsafe.raise_errors = previous
        queue.shutdown(1)
    assert ["a", "b"] == [r.log_record.body for r in exporter.exported]
    assert (1, 1) == (queue.bad_records, queue.dropped_total)
    assert not queue.failing
    assert [] == [message for level, message in reports if level == "warning"]


def test_queue_is_bounded_in_bytes_as_well_as_records() -> None:
    """A stalled collector with huge lines holds at most the byte budget, the rest is counted as dropped."""
    exporter = BlockingExporter()
    queue = LogExportQueue(exporter, RESOURCE, max_queue_size=1000, max_queue_bytes=1_000_000, max_batch_size=1000)
    try:
        for _ in range(100):
            queue.put(event(message="m", blob="x" * 100_000))
        assert queue.dropped_total >= 90
    finally:
        exporter.release.set()
        queue.shutdown(2)


def test_attribute_limits_are_applied() -> None:
    """The SDK's count and length limits hold for exported records."""
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    queue = LogExportQueue(exporter, RESOURCE, max_attributes=3, max_attribute_length=5)
    try:
        queue.put(event(message="m", a="abcdefgh", b=1, c=2, d=3, e=4))
        assert queue.force_flush(5)
    finally:
        queue.shutdown(1)
    (record,) = exporter.get_finished_logs()
    attributes = dict(record.log_record.attributes or {})
    assert 3 == len(attributes)
    assert "abcde" == attributes["a"]


def test_a_dropped_queue_is_not_kept_alive_by_the_fork_hook() -> None:
    """The at-fork registry holds queues weakly: a queue no one references is freed."""
    import gc
    import weakref

    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    queue = LogExportQueue(exporter, RESOURCE)
    queue.shutdown(1)
    ref = weakref.ref(queue)
    del queue
    gc.collect()
    assert ref() is None


def test_after_fork_the_child_gets_its_own_http_connections() -> None:
    """The at-fork hook gives the exporter a new requests session with the same headers and TLS settings."""
    from otel_logkit import _fork
    from otel_logkit.wire import FastOTLPLogExporter

    exporter = FastOTLPLogExporter(endpoint="http://127.0.0.1:9/v1/logs", headers={"x-tenant": "a"})
    queue = LogExportQueue(exporter, RESOURCE)
    transport = exporter._client._transport  # type: ignore[attr-defined]
    before = transport._session
    try:
        _fork._run()  # what os.fork() runs in the child
        after = transport._session
        assert before is not after
        assert before.headers == after.headers
        assert (before.verify, before.cert) == (after.verify, after.cert)
    finally:
        queue.shutdown(1)
