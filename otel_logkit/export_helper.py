"""The export helper process: receives an app process's records and sends them as OTLP.

Started by :class:`otel_logkit.handoff.HelperChannel` as ``python -I -c ... READ_FD STATS_FD``,
one per app process. It never imports the app: it reads the settings and resource from the
first frame, builds the same exporters, redactor and queues as the in-process path
(:mod:`otel_logkit.exporters`), and feeds them the records it reads from its pipe:
- log events go to a :class:`~otel_logkit.logs.otlp.LogExportQueue` (SDK ``LogRecord`` with the
  span context, attribute limits, the fast OTLP encoder, health reporting);
- span tuples are rebuilt as SDK ``ReadableSpan`` objects and go through the SDK's
  ``BatchSpanProcessor`` to the redacting, health-reporting OTLP span exporter.

It ignores SIGINT and SIGTERM (a Ctrl-C or a signal to the process group must not cost the
app's last records): it ends at the end of its pipe, when the app closes it or dies, or when
its parent is gone, after sending what it holds within ``LOGKIT_SHUTDOWN_TIMEOUT``. Its own
lines (export failing, recovered, drops) are JSON lines on the stdout it shares with the app.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

from opentelemetry import context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from otel_logkit import exporters
from otel_logkit.config import Settings
from otel_logkit.handoff import FLUSH, FLUSH_BODY, FRAME, HELLO, LOGS, MAX_FRAME, SPANS, STATS
from otel_logkit.logs import chain, stdlib
from otel_logkit.logs.health import ExportHealth, ReportingSpanExporter, report_line
from otel_logkit.logs.otlp import LogExportQueue
from otel_logkit.logs.sink import OncePerInterval
from otel_logkit.redact import Redactor

_STATS_INTERVAL = 0.25
_NICE = 10
_KINDS = tuple(SpanKind)


class HandedSpan(ReadableSpan):
    """A ``ReadableSpan`` rebuilt from :func:`otel_logkit.handoff.span_tuple`, dropped counts kept."""

    def __init__(self, item: Any, resource: Resource, scope: InstrumentationScope | None) -> None:
        (
            self._name,
            trace_id,
            span_id,
            flags,
            state,
            parent,
            kind,
            start_time,
            end_time,
            attributes,
            events,
            links,
            status_code,
            description,
            dropped_attributes,
            dropped_events,
            dropped_links,
            _,
        ) = item
        # ReadableSpan's own fields, set directly: its initializer builds defaults (an empty
        # resource, a status) that are thrown away here at once, for every span.
        self._context = SpanContext(
            trace_id, span_id, is_remote=False, trace_flags=_flags(flags), trace_state=TraceState(list(state))
        )
        self._parent = SpanContext(trace_id, parent[0], bool(parent[1])) if parent else None
        self._resource = resource
        self._attributes = attributes
        self._events = [Event(event_name, attributes_, timestamp) for event_name, timestamp, attributes_ in events]
        self._links = [
            Link(SpanContext(t, s, bool(remote), _flags(f)), link_attributes)
            for t, s, f, remote, link_attributes in links
        ]
        self._kind = _KINDS[kind] if 0 <= kind < len(_KINDS) else SpanKind.INTERNAL
        self._status = _status(status_code, description)
        self._start_time = start_time
        self._end_time = end_time
        self._instrumentation_scope = scope
        self._instrumentation_info = None
        self._dropped = (dropped_attributes, dropped_events, dropped_links)

    @property
    def dropped_attributes(self) -> int:
        """Attributes the app's span limits dropped."""
        return int(self._dropped[0])

    @property
    def dropped_events(self) -> int:
        """Events the app's span limits dropped."""
        return int(self._dropped[1])

    @property
    def dropped_links(self) -> int:
        """Links the app's span limits dropped."""
        return int(self._dropped[2])


_FLAGS = {flags: TraceFlags(flags) for flags in range(256)}
_UNSET, _OK = Status(StatusCode.UNSET), Status(StatusCode.OK)


def _flags(value: int) -> TraceFlags:
    return _FLAGS.get(value) or TraceFlags(value & 0xFF)


def _status(code: int, description: str | None) -> Status:
    if code == StatusCode.ERROR.value:
        return Status(StatusCode.ERROR, description)
    return _OK if code == StatusCode.OK.value else _UNSET


class FrameReader:
    """Splits the byte stream from the app into ``(kind, payload)`` frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Add ``data``; yield every frame now complete."""
        buffer = self._buffer
        buffer += data
        offset = 0
        end = len(buffer)
        while end - offset >= FRAME.size:
            length, kind = FRAME.unpack_from(buffer, offset)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes: the stream is corrupt")
            start = offset + FRAME.size
            if end - start < length:
                break
            yield kind, bytes(buffer[start : start + length])
            offset = start + length
        del buffer[:offset]


class Helper:
    """The helper's state: its exporters and counters."""

    def __init__(self, hello: dict[str, Any], stats_fd: int) -> None:
        fields = hello["settings"]
        self.settings = Settings(**{**fields, "resource_attributes": MappingProxyType(fields["resource_attributes"])})
        self.app_pid: int = hello["app_pid"]
        self.stats_fd = stats_fd
        settings = self.settings
        self.resource = Resource(hello["resource"], hello["schema_url"])
        self.redactor = Redactor.from_settings(settings)
        self.health = ExportHealth(settings.otlp_endpoint, _report)
        self.log_queue: LogExportQueue | None = None
        if hello["logs"]:
            self.log_queue = exporters.log_export_queue(settings, self.resource, None, self.health, _report)
        # The helper's own lines: JSON on the shared stdout, exported like the app's.
        chain.configure_logging(settings, stdlib.LineWriter(sys.stdout), self.redactor, self.log_queue)
        # Libraries' DEBUG and INFO lines here (urllib3's per request) are the helper's, not the app's.
        logging.getLogger().setLevel(max(settings.log_level, logging.WARNING))
        self.spans: BatchSpanProcessor | None = None
        self.span_exporter: ReportingSpanExporter | None = None
        # Spans arrive in bursts from the pipe, not one per request: the gate below holds at most
        # this many at a time and counts the rest (the SDK's queue would log each drop).
        self.span_capacity = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") or settings.export_queue_size)
        self.spans_handed = 0
        self.span_drops_unreported = 0
        self.span_drop_reports = OncePerInterval()
        if hello["spans"]:
            batch = int(os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or 512)
            self.spans, self.span_exporter = exporters.otlp_span_pipeline(
                settings, self.health, self.redactor, max_queue_size=self.span_capacity + batch
            )
        self._scopes: dict[Any, InstrumentationScope | None] = {}
        self.received = 0
        self.acknowledged = 0
        self.span_drops = 0

    def handle(self, kind: int, payload: bytes) -> None:
        """Dispatch one frame."""
        if kind == LOGS:
            events = marshal.loads(payload)  # noqa: S302 - from our own app process's pipe
            self.received += len(events)
            queue = self.log_queue
            if queue is not None and events:
                weight = 256 + len(payload) // len(events)  # what the record takes on the wire, about
                for event in events:
                    queue.put(event, copy=False, weight=weight)
        elif kind == SPANS:
            items = marshal.loads(payload)  # noqa: S302 - from our own app process's pipe
            self.received += len(items)
            for item in items:
                self._span(item)
        elif kind == FLUSH:
            sequence, milliseconds = FLUSH_BODY.unpack(payload)
            self.flush(milliseconds / 1000)
            self.acknowledged = max(self.acknowledged, sequence)
            self.write_stats()

    def _span(self, item: Any) -> None:
        if self.spans is None or self.span_exporter is None:
            return
        if self.spans_handed - self.span_exporter.settled >= self.span_capacity:
            self.span_drops += 1
            self.span_drops_unreported += 1
            self._report_span_drops()
            return
        scope_key = item[17]
        scope = self._scopes.get(scope_key if scope_key is None else tuple(scope_key), _MISSING)
        if scope is _MISSING:
            scope = InstrumentationScope(*scope_key) if scope_key is not None else None
            self._scopes[scope_key if scope_key is None else tuple(scope_key)] = scope
        try:
            span = HandedSpan(item, self.resource, scope)
        except Exception:  # noqa: BLE001 - a malformed tuple costs itself only
            self.span_drops += 1
            return
        self.spans.on_end(span)
        self.spans_handed += 1

    def _report_span_drops(self, *, force: bool = False) -> None:
        if not self.span_drops_unreported or not self.span_drop_reports.due(force=force):
            return
        dropped, self.span_drops_unreported = self.span_drops_unreported, 0
        _report(
            "warning",
            "spans dropped from the OTLP export: queue full",
            {"dropped": dropped, "queue_size": self.span_capacity},
        )

    def flush(self, timeout: float) -> None:
        """Export everything received, within ``timeout`` seconds; at once with the collector
        known to be down (the app's stdout has every line, waiting would only hold the app)."""
        if self.health.is_failing():
            return
        deadline = time.monotonic() + timeout
        if self.spans is not None:
            self.spans.force_flush(int(timeout * 1000))
        if self.log_queue is not None:
            self.log_queue.force_flush(max(0.0, deadline - time.monotonic()))

    def write_stats(self) -> None:
        """Tell the app how far the helper got (non-blocking; skipped when the app does not read)."""
        self._report_span_drops()
        queue = self.log_queue
        exporter = self.span_exporter
        exported_logs = queue.exported_total if queue is not None else 0
        exported_spans = exporter.exported if exporter is not None else 0
        settled = (queue.settled_total if queue is not None else 0) + (exporter.settled if exporter else 0)
        dropped = (queue.dropped_total if queue is not None else 0) + self.span_drops
        counts = (self.acknowledged, self.received, settled + self.span_drops, exported_logs, exported_spans, dropped)
        with contextlib.suppress(OSError):
            os.write(self.stats_fd, STATS.pack(*counts))

    def close(self) -> None:
        """Send what is held within ``LOGKIT_SHUTDOWN_TIMEOUT``, then stop the exporters."""
        self._report_span_drops(force=True)
        timeout = self.settings.shutdown_timeout
        deadline = time.monotonic() + timeout
        if self.spans is not None:
            if not self.health.is_failing("traces"):
                self.spans.force_flush(int(timeout * 1000))
            if self.span_exporter is not None:
                # Interrupts the exporter's retries toward a collector that is down.
                self.span_exporter.shutdown()
            self.spans.shutdown()  # type: ignore[no-untyped-call]
        if self.log_queue is not None:
            self.log_queue.shutdown(max(0.0, deadline - time.monotonic()))
        self.write_stats()


_MISSING: Any = object()


_report = report_line


def run(read_fd: int, stats_fd: int) -> None:
    """Read frames until the end of the pipe (or the parent is gone), then flush and stop."""
    reader = FrameReader()
    helper: Helper | None = None
    parent = os.getppid()
    last_stats = 0.0
    os.set_blocking(stats_fd, False)
    poller = select.poll()
    poller.register(read_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        if poller.poll(_STATS_INTERVAL * 1000):
            data = os.read(read_fd, 1024 * 1024)
            if not data:
                break
            for kind, payload in reader.feed(data):
                if helper is None:
                    if kind != HELLO:
                        raise ValueError("the first frame is not the hello frame")
                    helper = Helper(pickle.loads(payload), stats_fd)  # noqa: S301 - our own app process
                    continue
                helper.handle(kind, payload)
        now = time.monotonic()
        if helper is not None and now - last_stats >= _STATS_INTERVAL:
            helper.write_stats()
            last_stats = now
        if os.getppid() != parent:
            break  # the app is gone, whoever still holds the pipe
    if helper is not None:
        # Never outlive the app by more than the timeout, whatever an exporter does meanwhile.
        watchdog = threading.Timer(helper.settings.shutdown_timeout + 1.0, os._exit, (0,))
        watchdog.daemon = True
        watchdog.start()
        helper.close()


def main() -> None:
    """Entry point: ``python -I -c '...main()' READ_FD STATS_FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The exporters' own HTTP calls are never traced (nothing is instrumented here anyway).
    context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    read_fd, stats_fd = int(sys.argv[1]), int(sys.argv[2])
    # When CPU is scarce the app's requests come first: the helper takes what is left, and what
    # it cannot keep up with is bounded, dropped from the export and counted.
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    code = 0
    try:
        run(read_fd, stats_fd)
    except Exception as error:  # noqa: BLE001 - one line on stderr, and the app starts another helper
        sys.stderr.write(f"otel-logkit export helper: {error!r}\n")
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
