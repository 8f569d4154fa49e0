"""Export off the request path: the app side of the per-process export helper.

Each app process hands its log events and finished spans to an export helper process of its
own (``otel_logkit.export_helper``), which builds the OTLP records, redacts the spans, encodes
and sends them. On the calling thread a record costs a dict copy (or a reference to the ended
span) and a deque append. A hand-off thread wakes every ``interval`` seconds, serializes what
has accumulated with ``marshal`` in a few C calls, and writes it to a non-blocking pipe; it
never holds the GIL for long, and never waits for the collector.

Promises kept here:
- bounded: the deque by records and bytes, the unwritten frames by bytes; past them, records
  are dropped from the export (stdout has the logs), counted, reported once per interval;
- never blocks: the pipe is non-blocking; a helper that does not read just fills it;
- spawned lazily, after fork too: the first record in a process starts the hand-off thread and
  the helper; a forked child closes the parent's pipe and starts its own;
- restarted: a helper that exits is spawned again (with a back-off when it keeps dying) and the
  records it had not settled are counted as lost;
- flushed: :meth:`HelperChannel.force_flush` waits for the helper's acknowledgement; at exit
  the pipe is closed and the helper sends what it holds within ``LOGKIT_SHUTDOWN_TIMEOUT``;
- no orphan: the helper exits at the end of its pipe (the app's exit, even by SIGKILL) after at
  most that timeout, and is reaped by the app when it exits first.

Wire format, app to helper: frames of ``<uint32 length><uint8 kind><payload>``: kind ``H``
(hello: the pickled settings and resource, first), ``L`` (a marshalled list of event dicts),
``S`` (a marshalled list of span tuples, :func:`span_tuple`), ``F`` (flush: sequence number and
milliseconds allowed). Helper to app: :data:`STATS` records.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import marshal
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode
from structlog.typing import EventDict

from otel_logkit import _failsafe, _fork
from otel_logkit.config import Settings
from otel_logkit.logs.health import Report
from otel_logkit.logs.sink import LogSink, OncePerInterval, plain, weight

FRAME = struct.Struct("<IB")
"""Frame header: payload length, kind."""
HELLO, LOGS, SPANS, FLUSH = b"H"[0], b"L"[0], b"S"[0], b"F"[0]
FLUSH_BODY = struct.Struct("<QI")
"""Flush frame payload: sequence number, milliseconds the helper may spend."""
STATS = struct.Struct("<6Q")
"""Helper to app: flush acknowledged, records received, records settled (exported, refused or
dropped), log records exported, spans exported, records dropped in the helper."""
MAX_FRAME = 64 * 1024 * 1024

DEATH_REPORT_INTERVAL = 600.0
"""Seconds between two WARNING lines about helpers that exited (the first is written at once)."""
_CHUNK = 256
_WAKE_AT = 4 * _CHUNK
_SPAN_WEIGHT = 1024
_PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = 1031
_RESTART_BACKOFF_MAX = 30.0
_STABLE_AFTER = 10.0


_KIND_VALUES = {kind: kind.value for kind in SpanKind}
_STATUS_VALUES = {code: code.value for code in StatusCode}


def _plain_attributes(attributes: Any) -> dict[str, Any] | None:
    """A plain dict of span attributes: the SDK's ``BoundedAttributes`` keeps one inside (copying
    that is a C call; iterating the mapping itself takes a lock per key)."""
    if not attributes:
        return None
    inner = getattr(attributes, "_dict", None)
    return dict(inner if isinstance(inner, dict) else attributes)


def span_tuple(span: ReadableSpan) -> tuple[Any, ...]:
    """A finished span as built-in types (``marshal``-able); :mod:`otel_logkit.export_helper`
    rebuilds the ``ReadableSpan`` (a unit test checks that both encode to the same OTLP bytes)."""
    try:
        # The SDK span's own fields: its properties copy events and links under a lock and wrap
        # attributes in a proxy, several µs per span on the hand-off thread.
        name, context, parent, kind = span._name, span._context, span._parent, span._kind
        attributes, events, links = span._attributes, span._events, span._links
        status, scope = span._status, span._instrumentation_scope
        start_time, end_time = span._start_time, span._end_time
    except AttributeError:  # another ReadableSpan implementation: its public properties
        name, context, parent, kind = span.name, span.context, span.parent, span.kind
        attributes, events, links = span.attributes, span.events, span.links
        status, scope = span.status, span.instrumentation_scope
        start_time, end_time = span.start_time, span.end_time
    assert context is not None  # a finished SDK span always has its context
    return (
        name,
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        tuple(context.trace_state.items()) if context.trace_state else (),
        (parent.span_id, parent.is_remote) if parent is not None else None,
        _KIND_VALUES.get(kind, 0),
        start_time,
        end_time,
        _plain_attributes(attributes),
        tuple((e.name, e.timestamp, _plain_attributes(e.attributes)) for e in events) if events else (),
        tuple(
            (
                link.context.trace_id,
                link.context.span_id,
                int(link.context.trace_flags),
                link.context.is_remote,
                _plain_attributes(link.attributes),
            )
            for link in links
        )
        if links
        else (),
        _STATUS_VALUES.get(status.status_code, 0),
        status.description,
        getattr(attributes, "dropped", 0),
        getattr(events, "dropped", 0),
        getattr(links, "dropped", 0),
        (scope.name, scope.version, scope.schema_url) if scope is not None else None,
    )


def _marshal(items: list[Any]) -> bytes:
    try:
        return marshal.dumps(items, 4)
    except ValueError:
        # A value of a type marshal refuses (a str subclass such as Redacted, an object): its
        # built-in form; the helper turns it into an attribute exactly as the in-process path.
        return marshal.dumps([plain(item) for item in items], 4)


def _wait_for(fd: int, event: int, timeout: float) -> bool:
    """Wait until ``fd`` is ready for ``event`` (poll: a server's descriptors go past select's 1024)."""
    poller = select.poll()
    poller.register(fd, event | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(timeout * 1000))


def _frame(kind: int, payload: bytes) -> bytes:
    return FRAME.pack(len(payload), kind) + payload


def helper_command() -> list[str]:
    """The helper's command line: this Python, isolated (no ``PYTHONPATH``, no sitecustomize:
    the helper is never instrumented and never imports the app), finding otel-logkit where the
    app found it."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    boot = (
        # Signals first: a SIGTERM or Ctrl-C meant for the app must not end the helper while it
        # starts (it ends at the end of its pipe, after sending the app's last records).
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.signal(signal.SIGINT, signal.SIG_IGN); "
        f"import sys; sys.path.append({package_parent!r}); from otel_logkit.export_helper import main; main()"
    )
    return [sys.executable, "-I", "-c", boot]


class HelperChannel(LogSink):
    """The app side of the export helper: a log sink and, through :class:`SpanHandoff`, a span sink.

    Args:
        settings: sent to the helper (it builds the same exporters and redactor from them).
        resource: the resource every record belongs to.
        report: writes one line (level, message, fields) in the app.
        logs: whether log records are exported through the helper.
        spans: whether spans are.
        interval: seconds between two hand-offs.
        max_pending_bytes: serialized bytes held for a helper that does not read.
        redact_span: applied to each span before it leaves the app (the detectors the app
            registered are code of the app's, which the helper never imports).
    """

    __slots__ = (
        "__weakref__",
        "_appended",
        "_broken",
        "_cond",
        "_counts",
        "_death_reports",
        "_deaths_unreported",
        "_dropped",
        "_dropped_total",
        "_fails",
        "_flush_deadline",
        "_flush_requested",
        "_flush_sent",
        "_given_up",
        "_hello",
        "_interval",
        "_logs",
        "_loss_reports",
        "_lost",
        "_lost_total",
        "_lost_unreported",
        "_max_bytes",
        "_max_pending_bytes",
        "_max_records",
        "_pending",
        "_process",
        "_queued_bytes",
        "_records",
        "_redact_span",
        "_report",
        "_restart_at",
        "_restarts",
        "_spans",
        "_spawned_at",
        "_start_lock",
        "_stats_buffer",
        "_stats_fd",
        "_stopped",
        "_thread",
        "_wake",
        "_write_fd",
    )

    def __init__(
        self,
        settings: Settings,
        resource: Resource,
        report: Report,
        *,
        logs: bool,
        spans: bool,
        interval: float = 0.1,
        max_bytes: int = 64 * 1024 * 1024,
        max_pending_bytes: int = 8 * 1024 * 1024,
        redact_span: Callable[[ReadableSpan], ReadableSpan] | None = None,
    ) -> None:
        self._redact_span = redact_span
        self._logs = logs
        self._spans = spans
        self._hello = _frame(
            HELLO,
            pickle.dumps(
                {
                    # Plain fields (a frozen dataclass with a read-only mapping does not pickle).
                    "settings": {**settings.fields(), "resource_attributes": dict(settings.resource_attributes)},
                    "resource": dict(resource.attributes),
                    "schema_url": resource.schema_url,
                    "app_pid": os.getpid(),
                    "logs": logs,
                    "spans": spans,
                }
            ),
        )
        self._report = report
        self._interval = interval
        self._max_records = settings.export_queue_size
        self._max_bytes = max_bytes
        self._max_pending_bytes = max_pending_bytes
        self._stopped = False
        self._reset()
        _fork.after_fork_in_child(self._after_fork)

    def _reset(self) -> None:
        """State of a process that has not handed anything over yet (at start, after fork)."""
        self._records: collections.deque[tuple[Any, int]] = collections.deque()
        self._queued_bytes = 0
        self._pending = bytearray()
        self._appended = 0  # records serialized for the current helper
        self._counts = (0, 0, 0, 0, 0, 0)  # the current helper's last STATS
        self._stats_buffer = b""
        self._process: subprocess.Popen[bytes] | None = None
        self._write_fd = -1
        self._stats_fd = -1
        self._broken = False
        self._spawned_at = 0.0
        self._restart_at = 0.0
        self._fails = 0
        self._restarts = 0
        self._deaths_unreported = 0
        self._lost_unreported = 0
        self._death_reports = OncePerInterval(DEATH_REPORT_INTERVAL)
        self._given_up = 0
        self._dropped = 0
        self._dropped_total = 0
        self._lost = 0
        self._lost_total = 0
        self._loss_reports = OncePerInterval()
        self._flush_requested = 0
        self._flush_sent = 0
        self._flush_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()

    # -- calling threads ------------------------------------------------------------------------
    def put(self, event_dict: EventDict) -> None:
        """Hand a copy of ``event_dict`` over for export, or count it as dropped when full."""
        self._add(dict(event_dict), weight(event_dict))

    def put_span(self, span: ReadableSpan) -> None:
        """Hand an ended span over (it is immutable from now on: no copy needed)."""
        self._add(span, _SPAN_WEIGHT)

    def _add(self, item: Any, size: int) -> None:
        if self._thread is None:
            self._start()
        if len(self._records) >= self._max_records or self._queued_bytes + size > self._max_bytes or self._stopped:
            self._dropped += 1  # a lost increment under a thread race only under-counts by one
            return
        self._queued_bytes += size  # approximate under threads: a bound, not an account
        records = self._records
        records.append((item, size))
        if len(records) == _WAKE_AT:
            self._wake.set()  # once per burst, not on every record after it

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopped:
                return
            thread = threading.Thread(target=self._run, name="otel-logkit-handoff", daemon=True)
            thread.start()
            self._thread = thread

    @property
    def dropped_total(self) -> int:
        """Records dropped from the export since start-up: at the hand-off, lost with a helper
        that died, and dropped by the helper."""
        return self._dropped_total + self._dropped + self._lost_total + self._lost + self._counts[5]

    @property
    def exported_total(self) -> int:
        """Log records the collector accepted (as last reported by the helper)."""
        return self._counts[3]

    @property
    def exported_spans(self) -> int:
        """Spans the collector accepted (as last reported by the helper)."""
        return self._counts[4]

    @property
    def waiting(self) -> int:
        """Records not yet written to the helper's pipe (0: all handed over)."""
        return len(self._records) + (1 if self._pending else 0)

    @property
    def carries_spans(self) -> bool:
        """Whether spans are exported through the helper."""
        return self._spans

    @property
    def helper_pid(self) -> int | None:
        """The current helper's process id (``None`` before the first record)."""
        process = self._process
        return process.pid if process is not None else None

    @property
    def restarts(self) -> int:
        """Helpers that exited and were replaced."""
        return self._restarts

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Hand everything over and wait until the helper has exported it (or ``timeout``)."""
        if self._thread is None or self._stopped:
            return not self._records
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_requested += 1
            target = self._flush_requested
            self._flush_deadline = deadline
        self._wake.set()
        with self._cond:
            self._cond.wait_for(
                lambda: self._counts[0] >= target or self._given_up >= target, max(0.0, deadline - time.monotonic())
            )
            return self._counts[0] >= target

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush within ``timeout`` seconds, close the pipe, and reap the helper."""
        deadline = time.monotonic() + timeout
        if self._thread is not None and not self._stopped:
            self.force_flush(timeout)
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()) + 0.2)
        process = self._process
        self._close_pipes()
        self._report_losses(force=True)
        if process is not None:
            # The helper exits at the end of its pipe once it has sent what it holds.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.05, deadline - time.monotonic()))

    # -- hand-off thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._cycle()
            except Exception as error:  # noqa: BLE001 - the hand-off must never stop
                _failsafe.report("export hand-off", error)
            if self._stopped:
                with contextlib.suppress(Exception):
                    self._cycle(final=True)
                return

    def _cycle(self, *, final: bool = False) -> None:
        self._ensure_helper()
        if self._write_fd < 0:
            if self._flush_requested > self._given_up:
                with self._cond:  # no helper to flush to (it is restarting): do not make callers wait
                    self._given_up = self._flush_requested
                    self._cond.notify_all()
            self._report_losses()
            return
        flushing = self._flush_requested > self._flush_sent or final
        deadline = self._flush_deadline if flushing else None
        self._serialize(everything=flushing)
        self._write(deadline)
        if flushing and not self._pending and not self._broken:
            sequence = self._flush_requested
            allowed = max(0.0, self._flush_deadline - time.monotonic())
            self._pending += _frame(FLUSH, FLUSH_BODY.pack(sequence, int(allowed * 1000)))
            self._write(self._flush_deadline)
            if not self._pending:
                self._flush_sent = sequence
                self._await_ack(sequence, self._flush_deadline)
        self._read_stats(0.0)
        self._report_losses()

    def _serialize(self, *, everything: bool) -> None:
        records = self._records
        logs: list[EventDict] = []
        spans: list[tuple[Any, ...]] = []
        while records and (everything or len(self._pending) < self._max_pending_bytes):
            try:
                item, size = records.popleft()
            except IndexError:
                break
            self._queued_bytes -= size
            if type(item) is dict:
                logs.append(item)
                if len(logs) == _CHUNK:
                    self._append(LOGS, logs)
                    logs = []
            else:
                try:
                    if self._redact_span is not None:
                        item = self._redact_span(item)
                    spans.append(span_tuple(item))
                except Exception as error:  # noqa: BLE001 - one odd span must not cost the batch
                    self._dropped += 1
                    _failsafe.report("span hand-off", error)
                    continue
                if len(spans) == _CHUNK:
                    self._append(SPANS, spans)
                    spans = []
        if logs:
            self._append(LOGS, logs)
        if spans:
            self._append(SPANS, spans)

    def _append(self, kind: int, items: list[Any]) -> None:
        self._pending += _frame(kind, _marshal(items))
        self._appended += len(items)

    def _write(self, deadline: float | None) -> None:
        while self._pending and not self._broken:
            try:
                written = os.write(self._write_fd, self._pending)
            except BlockingIOError:
                remaining = (deadline - time.monotonic()) if deadline is not None else 0.0
                if remaining <= 0:
                    return
                _wait_for(self._write_fd, select.POLLOUT, min(remaining, 0.05))
                continue
            except OSError:
                self._broken = True  # the helper is gone (EPIPE): handled at the next cycle
                return
            del self._pending[:written]

    def _await_ack(self, sequence: int, deadline: float) -> None:
        while self._counts[0] < sequence and not self._broken:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not self._read_stats(min(remaining, 0.05)):
                process = self._process
                if process is None or process.poll() is not None:
                    return

    def _read_stats(self, wait: float) -> bool:
        """Read the helper's latest counters; tell whether the helper is still there."""
        if self._stats_fd < 0:
            return False
        if wait > 0 and not _wait_for(self._stats_fd, select.POLLIN, wait):
            return True
        try:
            data = os.read(self._stats_fd, 64 * STATS.size)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        data = self._stats_buffer + data
        whole = len(data) - len(data) % STATS.size
        self._stats_buffer = data[whole:]
        if whole:
            with self._cond:
                self._counts = STATS.unpack_from(data, whole - STATS.size)
                self._cond.notify_all()
        return True

    # -- the helper process ---------------------------------------------------------------------
    def _ensure_helper(self) -> None:
        process = self._process
        if process is not None:
            if not self._broken and process.poll() is None:
                return
            self._helper_gone(process)
        if self._stopped or time.monotonic() < self._restart_at:
            return
        self._spawn()

    def _spawn(self) -> None:
        read_fd, write_fd = os.pipe()
        stats_read, stats_write = os.pipe()
        try:
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
            os.set_blocking(write_fd, False)
            os.set_blocking(stats_read, False)
            process = subprocess.Popen(
                [*helper_command(), str(read_fd), str(stats_write)],
                pass_fds=(read_fd, stats_write),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                # Its own process group: signals sent to the app's group (a terminal's Ctrl-C, a
                # supervisor's killpg) are the app's to handle.
                process_group=0,
            )
        except Exception as error:  # noqa: BLE001 - no helper: records wait (bounded), then drop
            for fd in (write_fd, stats_read):
                os.close(fd)
            self._schedule_restart()
            _failsafe.report("export helper start", error)
            return
        finally:
            os.close(read_fd)
            os.close(stats_write)
        self._process = process
        self._write_fd, self._stats_fd = write_fd, stats_read
        self._broken = False
        self._spawned_at = time.monotonic()
        self._pending = bytearray(self._hello)
        self._appended = 0
        self._stats_buffer = b""
        with self._cond:
            self._counts = (self._counts[0], 0, 0, self._counts[3], self._counts[4], 0)

    def _helper_gone(self, process: subprocess.Popen[bytes]) -> None:
        """The helper exited (or its pipe broke): count what it had not settled, start another."""
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1.0)
        self._read_stats(0.0)
        counts = self._counts
        lost = max(0, self._appended - counts[2])
        self._lost += lost
        self._dropped_total += counts[5]
        exported_logs, exported_spans = counts[3], counts[4]
        self._close_pipes()
        self._pending = bytearray()
        self._appended = 0
        with self._cond:
            self._counts = (counts[0], 0, 0, exported_logs, exported_spans, 0)
            self._given_up = self._flush_requested  # what it held is gone: a waiting flush ends now
            self._cond.notify_all()
        self._restarts += 1
        self._deaths_unreported += 1
        self._lost_unreported += lost
        if self._death_reports.due():
            # One line per death, but a helper that keeps dying (it cannot start) writes one line
            # per interval, with what it cost since the last.
            self._report(
                "warning",
                "otel-logkit export helper exited; starting another",
                {
                    "exit_code": process.returncode,
                    "lost_records": self._lost_unreported,
                    "helper_pid": process.pid,
                    "exits": self._deaths_unreported,
                },
            )
            self._deaths_unreported = self._lost_unreported = 0
        self._schedule_restart()

    def _schedule_restart(self) -> None:
        lived = time.monotonic() - self._spawned_at if self._spawned_at else 0.0
        self._fails = 0 if lived > _STABLE_AFTER else self._fails + 1
        backoff = 0.0 if self._fails <= 1 else min(_RESTART_BACKOFF_MAX, 0.5 * 2 ** (self._fails - 2))
        self._restart_at = time.monotonic() + backoff

    def _close_pipes(self) -> None:
        for fd in (self._write_fd, self._stats_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._write_fd = self._stats_fd = -1
        self._process = None

    def _report_losses(self, *, force: bool = False) -> None:
        if (not self._dropped and not self._lost) or not self._loss_reports.due(force=force):
            return
        dropped, self._dropped = self._dropped, 0
        lost, self._lost = self._lost, 0
        self._dropped_total += dropped
        self._lost_total += lost
        if dropped:
            self._report(
                "warning",
                "log records and spans dropped from the OTLP export: the export helper is not keeping up",
                {"dropped": dropped, "queue_size": self._max_records},
            )

    def _after_fork(self) -> None:
        # The parent's pipe and helper are the parent's: close our copies (the parent's helper
        # must see the end of its pipe when the parent exits) and start afresh on first use.
        for fd in (self._write_fd, self._stats_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._process is not None:
            self._process.returncode = 0  # not our child: never wait for it, nor warn about it
        self._reset()


class SpanHandoff(SpanProcessor):
    """Hands each ended, sampled span to the export helper."""

    def __init__(self, channel: HelperChannel) -> None:
        self._channel = channel

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Hand the ended span over, when it is sampled."""
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self._channel.put_span(span)

    def shutdown(self) -> None:
        """Nothing: the channel is shut down with the rest of otel-logkit's export."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the channel (spans and logs alike)."""
        return self._channel.force_flush(timeout_millis / 1000)
