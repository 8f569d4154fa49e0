"""OTLP emission of log lines: a cheap hand-off on the calling thread, SDK records on a worker.

The calling thread only copies the event dict into a bounded deque (``LogExportQueue.put``).
A daemon worker builds the SDK ``LogRecord`` objects (span context set on the record, body =
message, other fields as typed attributes) and hands them to the SDK's OTLP exporter. When the
queue is full, records are dropped from the export only (stdout already has them), counted, and
reported as one WARNING line per interval.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags
from structlog.typing import EventDict

from otel_logkit import _failsafe, _fork
from otel_logkit._event_keys import NS_KEY
from otel_logkit.logs.health import ExportHealth
from otel_logkit.logs.processors import utf8_safe
from otel_logkit.logs.sink import LogSink, OncePerInterval
from otel_logkit.logs.sink import weight as _weight

_SEVERITY: dict[str, SeverityNumber] = {
    "DEBUG": SeverityNumber.DEBUG,
    "INFO": SeverityNumber.INFO,
    "WARNING": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
    "CRITICAL": SeverityNumber.FATAL,
}
# Fields that become part of the record itself (or of the resource), not attributes.
_NOT_ATTRIBUTES = frozenset({"color_message"}) | frozenset(
    {
        "message",
        "event",
        "level",
        "timestamp",
        "trace_id",
        "span_id",
        "service",
        "env",
        NS_KEY,
        "_logkit_sampled",
    }
)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT_FLAGS = TraceFlags(TraceFlags.DEFAULT)
_MAX_DEPTH = 8


def to_attribute(value: Any, depth: int = 0, *, limit: int | None = None) -> Any:  # noqa: PLR0911 - one flat dispatch on type
    """Convert a field value to an OTLP attribute value, keeping its type where OTLP has one.

    Strings are made valid UTF-8 (lone surrogates escaped: a collector refuses the whole batch
    otherwise) and cut to ``limit`` characters.
    """
    if isinstance(value, str):
        return utf8_safe(value if limit is None else value[:limit])
    if value is None or isinstance(value, bool | int | float | bytes):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return str(value)
        return value
    if depth >= _MAX_DEPTH:
        return utf8_safe(repr(value))
    if isinstance(value, Mapping):
        return {utf8_safe(str(k)): to_attribute(v, depth + 1, limit=limit) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_attribute(v, depth + 1, limit=limit) for v in value]
    return utf8_safe(str(value))


_PRIMITIVES = frozenset({str, bool, float})


class _ExportLogRecord(LogRecord):
    """An SDK ``LogRecord`` built on the export worker from an event dict.

    The base initializer looks the span up in the current context; here the span context comes
    from the event (captured on the logging thread), so the ids are set directly.
    """

    def __init__(
        self,
        *,
        timestamp: int,
        trace_id: int,
        span_id: int,
        trace_flags: TraceFlags,
        severity_text: str,
        severity_number: SeverityNumber,
        body: str,
        attributes: dict[str, Any],
    ) -> None:
        self.timestamp = timestamp
        self.observed_timestamp = timestamp
        self.context = None  # type: ignore[assignment]
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags
        self.severity_text = severity_text
        self.severity_number = severity_number
        self.body = body
        self.attributes = attributes
        self.event_name = None
        self.exception = None


class _HashedResource(Resource):
    """A Resource whose hash is computed once: the OTLP encoder groups every record by its
    resource, and ``Resource.__hash__`` serializes all attributes to JSON on each call."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or super().__eq__(other)


def _parse_id(text: Any, length: int) -> int:
    if isinstance(text, str) and len(text) == length:
        try:
            return int(text, 16)
        except ValueError:
            return 0
    return 0


class LogExportQueue(LogSink):
    """Bounded hand-off from logging threads to a worker that exports OTLP LogRecords.

    Args:
        exporter: an SDK ``LogRecordExporter`` (OTLP over HTTP or gRPC).
        resource: the resource every record belongs to.
        max_queue_size: records held before new ones are dropped from the export.
        max_queue_bytes: approximate bytes of text held before new records are dropped (a
            collector outage must not grow memory with the size of the lines).
        max_attributes: attributes kept per record (the SDK's ``OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT``).
        max_attribute_length: characters kept per string attribute
            (``OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT``), ``None``: no limit.
        max_batch_size: records per export call.
        schedule_delay: seconds the worker waits for a batch to fill.
        health: where export failures and recoveries are reported (once each).
        report_drops: called with the number of records dropped since the last call.
    """

    def __init__(
        self,
        exporter: LogRecordExporter,
        resource: Resource,
        *,
        max_queue_size: int = 20_000,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_attributes: int = 128,
        max_attribute_length: int | None = None,
        max_batch_size: int = 512,
        schedule_delay: float = 0.5,
        health: ExportHealth | None = None,
        report_drops: Callable[[int], None] | None = None,
    ) -> None:
        self._exporter = exporter
        self._resource = _HashedResource(resource)
        self._scope = InstrumentationScope("otel_logkit")
        self._max_queue_size = max_queue_size
        self._max_queue_bytes = max_queue_bytes
        self._max_attributes = max_attributes
        self._max_attribute_length = max_attribute_length
        self._queued_bytes = 0
        self._bad_records = 0
        self._max_batch_size = max_batch_size
        self._schedule_delay = schedule_delay
        self._health = health
        self._report_drops = report_drops
        self._queue: collections.deque[tuple[EventDict, int]] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._drop_lock = threading.Lock()
        self._dropped = 0
        self._dropped_total = 0
        self._exported_total = 0
        self._attempted_total = 0
        self._drop_reports = OncePerInterval()
        self._shutdown = False
        self._flush_requested = False
        self._start_worker()
        _fork.after_fork_in_child(self._after_fork)

    # -- calling thread -------------------------------------------------------------------------
    def put(self, event_dict: EventDict, *, copy: bool = True, weight: int | None = None) -> None:
        """Queue a copy of ``event_dict`` for export, or count it as dropped when full.

        ``copy=False``: the caller hands the dict over and never touches it again; ``weight``:
        the caller knows its approximate size in bytes.
        """
        queue = self._queue
        size = len(queue)
        if weight is None:
            weight = _weight(event_dict)
        if size >= self._max_queue_size or self._queued_bytes + weight > self._max_queue_bytes or self._shutdown:
            with self._drop_lock:
                self._dropped += 1
            return
        self._queued_bytes += weight  # approximate under threads: a bound, not an account
        queue.append((dict(event_dict) if copy else event_dict, weight))
        if size + 1 == self._max_batch_size:
            self._wake.set()

    @property
    def dropped_total(self) -> int:
        """Records dropped from the export since start-up."""
        return self._dropped_total + self._dropped

    @property
    def exported_total(self) -> int:
        """Records the exporter accepted since start-up."""
        return self._exported_total

    @property
    def settled_total(self) -> int:
        """Records done with: exported, refused by the exporter, or dropped."""
        return self._attempted_total + self.dropped_total

    # -- worker ---------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name="otel-logkit-log-export", daemon=True)
        self._worker.start()

    def _after_fork(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        _fork.renew_http_session(self._exporter)
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._drop_lock = threading.Lock()
        if not self._shutdown:
            self._start_worker()

    def _run(self) -> None:
        # The exporter's own HTTP calls must not create client spans (a feedback loop).
        context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        last_export = time.monotonic()
        while True:
            self._wake.wait(max(0.0, last_export + self._schedule_delay - time.monotonic()))
            self._wake.clear()
            # Full batches go at once; a partial one waits for the schedule delay (or a flush):
            # exporting whatever has trickled in would mean many tiny, costly exports under load.
            due = time.monotonic() >= last_export + self._schedule_delay
            everything = due or self._flush_requested or self._shutdown
            self._flush_requested = False
            if everything:
                last_export = time.monotonic()
            self._drain(everything)
            self._maybe_report_drops()
            if self._shutdown:
                return

    def _drain(self, everything: bool) -> None:
        queue = self._queue
        # What is queued now goes out (when due); records that arrive meanwhile wait for a
        # full batch or the next round, instead of trickling out in tiny exports.
        pending = len(queue) if everything else 0
        while queue and (pending > 0 or len(queue) >= self._max_batch_size):
            self._idle.clear()
            batch: list[EventDict] = []
            with contextlib.suppress(IndexError):
                for _ in range(self._max_batch_size):
                    event, weight = queue.popleft()
                    self._queued_bytes -= weight
                    batch.append(event)
            pending -= len(batch)
            self._export(batch)
        self._idle.set()

    def _export(self, batch: Sequence[EventDict]) -> None:
        records = []
        for event in batch:
            try:
                records.append(self._record(event))
            except Exception as error:  # noqa: BLE001 - one bad record must not cost the batch
                self._count_bad(error)
        if not records:
            return
        self._attempted_total += len(records)
        try:
            result = self._exporter.export(records)
        except Exception as error:  # noqa: BLE001 - an exporter bug must never stop the worker
            # Not the collector's fault (it answers with a status): find the record(s) the
            # encoder refuses and send the rest.
            result = self._export_one_by_one(records, error)
        if result is LogRecordExportResult.SUCCESS:
            self._exported_total += len(records)
            if self._health is not None:
                self._health.succeeded("logs")
        elif self._health is not None:
            self._health.failed("logs", None)

    def _export_one_by_one(self, records: list[ReadableLogRecord], error: Exception) -> LogRecordExportResult:
        result = LogRecordExportResult.SUCCESS
        sent: list[ReadableLogRecord] = []
        for record in records:
            try:
                outcome = self._exporter.export([record])
            except Exception as each:  # noqa: BLE001 - counted and reported once
                self._count_bad(each)
                continue
            if outcome is not LogRecordExportResult.SUCCESS:
                result = outcome
            else:
                sent.append(record)
        records[:] = sent
        if not sent and result is LogRecordExportResult.SUCCESS:
            self._count_bad(error)
        return result

    def _count_bad(self, error: Exception) -> None:
        with self._drop_lock:
            self._dropped += 1
        self._bad_records += 1
        with contextlib.suppress(Exception):
            _failsafe.report("log record export", error)

    @property
    def bad_records(self) -> int:
        """Records that could not be turned into OTLP (counted as dropped, reported once)."""
        return self._bad_records

    def _record(self, event: EventDict) -> ReadableLogRecord:
        trace_id = _parse_id(event.get("trace_id"), 32)
        span_id = _parse_id(event.get("span_id"), 16) if trace_id else 0
        level = str(event.get("level", "INFO")).upper()
        attributes: dict[str, Any] = {}
        limit = self._max_attribute_length
        for key, value in event.items():
            if key in _NOT_ATTRIBUTES or value is None:
                continue
            if type(key) is not str:
                key = utf8_safe(str(key))  # noqa: PLW2901 - non-string keys are rendered as text
            if key[:1] == "_":
                continue
            if len(attributes) >= self._max_attributes:
                break
            kind = type(value)
            if kind is str:
                value = utf8_safe(value if limit is None else value[:limit])  # noqa: PLW2901
            elif not (kind in _PRIMITIVES or (kind is int and -(2**63) <= value < 2**63)):
                value = to_attribute(value, limit=limit)  # noqa: PLW2901
            attributes[key] = value
        message = event.get("message", event.get("event", ""))
        record = _ExportLogRecord(
            timestamp=event.get(NS_KEY) or time.time_ns(),
            trace_id=trace_id,
            span_id=span_id if trace_id else 0,
            trace_flags=_SAMPLED if trace_id and event.get("_logkit_sampled") else _DEFAULT_FLAGS,
            severity_text=level,
            severity_number=_SEVERITY.get(level, SeverityNumber.UNSPECIFIED),
            body=utf8_safe(message if isinstance(message, str) else str(message)),
            attributes=attributes,
        )
        return ReadableLogRecord(log_record=record, resource=self._resource, instrumentation_scope=self._scope)

    def _maybe_report_drops(self, force: bool = False) -> None:
        if not self._dropped or self._report_drops is None or not self._drop_reports.due(force=force):
            return
        with self._drop_lock:
            dropped, self._dropped = self._dropped, 0
        self._dropped_total += dropped
        self._report_drops(dropped)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def failing(self) -> bool:
        """Whether the last export failed (the endpoint is down or refusing)."""
        return self._health is not None and self._health.is_failing("logs")

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export everything queued so far; return whether it finished within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._queue and self._idle.is_set():
                return True
            self._flush_requested = True
            self._wake.set()
            self._idle.wait(0.01)
        return False

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush within ``timeout`` seconds, report drops, stop the worker and the exporter."""
        deadline = time.monotonic() + timeout
        if not self.failing:
            # With the endpoint known to be down, waiting would only delay the exit: stdout has
            # every line, and the exporter's retries are interrupted by its shutdown below.
            self.force_flush(timeout)
        self._maybe_report_drops(force=True)
        self._shutdown = True
        self._wake.set()
        with contextlib.suppress(Exception):
            self._exporter.shutdown()  # type: ignore[no-untyped-call]
        self._worker.join(max(0.0, deadline - time.monotonic()))
