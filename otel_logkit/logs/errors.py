"""Repeated errors: a stable ``error_fingerprint`` on every ERROR line, and storms collapsed to a count.

The fingerprint is built from what stays the same when the same error happens again: the
logger, the message template (structlog's event, stdlib's ``msg`` before ``%``-formatting), the
error type and the top application frame (file name and function, not the line number). It is
the same across processes and restarts, and never includes variable data (ids, amounts, text).

With ``LOGKIT_DEDUP_WINDOW`` each fingerprint is written at most ``LOGKIT_DEDUP_BURST`` times per
window; the rest are counted, and when the window ends one line ``repeated error suppressed``
says how many, with the first and last timestamps. The export follows stdout.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from structlog.typing import EventDict, WrappedLogger

from otel_logkit._event_keys import EXC_KEY

FINGERPRINT_KEY = "error_fingerprint"
_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
_LIBRARY_PATHS = tuple(
    {path for path in (sysconfig.get_path(name) for name in ("stdlib", "purelib", "platlib")) if path}
)
_OWN_MODULES = ("structlog", "logging", "otel_logkit")
_MAX_TRACKED = 10_000


def _is_application(filename: str) -> bool:
    return not filename.startswith(_LIBRARY_PATHS) and "site-packages" not in filename


def _frame_of_traceback(tb: TracebackType | None) -> tuple[str, str] | None:
    """The innermost application frame of a traceback (file name, function)."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_application(code.co_filename):
            found = (os.path.basename(code.co_filename), code.co_name)
        tb = tb.tb_next
    return found


def _calling_frame() -> tuple[str, str] | None:
    """The first frame outside structlog, logging and otel-logkit: where the line was logged."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.partition(".")[0] not in _OWN_MODULES:
            return (os.path.basename(frame.f_code.co_filename), frame.f_code.co_name)
        frame = frame.f_back
    return None


def fingerprint(logger: str, template: str, error_type: str, frame: tuple[str, str] | None) -> str:
    """16 hex characters naming one kind of error (stable across processes and restarts)."""
    where = f"{frame[0]}:{frame[1]}" if frame else ""
    text = "\x1f".join((logger, template, error_type, where))
    return hashlib.blake2b(text.encode("utf-8", "backslashreplace"), digest_size=8).hexdigest()


def add_error_fingerprint(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``error_fingerprint`` to ERROR and CRITICAL lines (after the exception fields, before rendering)."""
    if event_dict.get("level") not in _ERROR_LEVELS or FINGERPRINT_KEY in event_dict:
        return event_dict
    record = event_dict.get("_record")
    error = event_dict.get(EXC_KEY)
    frame = _frame_of_traceback(error.__traceback__) if isinstance(error, BaseException) else None
    if record is not None:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        if frame is None and _is_application(record.pathname):
            frame = (os.path.basename(record.pathname), record.funcName)
    else:
        template = str(event_dict.get("message", ""))
        if frame is None:
            frame = _calling_frame()
    event_dict[FINGERPRINT_KEY] = fingerprint(
        str(event_dict.get("logger", "")), template, str(event_dict.get("error_type", "")), frame
    )
    return event_dict


class _Window:
    __slots__ = ("count", "first", "last", "start", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.suppressed = 0
        self.first = ""
        self.last = ""


class ErrorDeduplicator:
    """Writes each error fingerprint at most ``burst`` times per ``window`` seconds.

    Args:
        window: ``LOGKIT_DEDUP_WINDOW``.
        burst: ``LOGKIT_DEDUP_BURST``.
        report: writes the ``repeated error suppressed`` line for a fingerprint's window.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        window: float,
        burst: int,
        report: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.burst = burst
        self._report = report
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Let the line through, or raise :class:`Suppressed` when its fingerprint is over the burst."""
        key = event_dict.get(FINGERPRINT_KEY)
        if key is None:
            return event_dict
        now = self._clock()
        due: list[dict[str, Any]] = []
        try:
            with self._lock:
                window = self._windows.get(key)
                if window is None or now - window.start >= self.window:
                    if window is not None and window.suppressed:
                        due.append(self._summary(key, window))
                    if len(self._windows) >= _MAX_TRACKED:
                        due += self._expired(now, everything=True)
                    window = self._windows[key] = _Window(now)
                window.count += 1
                if window.count <= self.burst:
                    return event_dict
                window.suppressed += 1
                stamp = str(event_dict.get("timestamp", ""))
                if window.suppressed == 1:
                    window.first = stamp
                    self._schedule(window.start + self.window - now)
                window.last = stamp
        finally:
            for fields in due:
                self._report(fields)
        raise Suppressed

    def _schedule(self, delay: float) -> None:
        if self._timer is not None and self._timer.is_alive():
            return
        timer = threading.Timer(max(0.0, delay) + 0.01, self._on_timer)
        timer.daemon = True
        timer.name = "otel-logkit-dedup"
        self._timer = timer
        timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            due = self._expired(self._clock())
            pending = [w.start + self.window for w in self._windows.values() if w.suppressed]
            if pending:
                self._schedule(min(pending) - self._clock())
        for fields in due:
            self._report(fields)

    def _expired(self, now: float, *, everything: bool = False) -> list[dict[str, Any]]:
        due = []
        for key, window in list(self._windows.items()):
            if everything or now - window.start >= self.window:
                if window.suppressed:
                    due.append(self._summary(key, window))
                del self._windows[key]
        return due

    def _summary(self, key: str, window: _Window) -> dict[str, Any]:
        fields = {
            FINGERPRINT_KEY: key,
            "suppressed": window.suppressed,
            "window_s": self.window,
            "first_timestamp": window.first,
            "last_timestamp": window.last,
        }
        window.suppressed = 0
        return fields

    def flush(self) -> None:
        """Write the pending summaries now (shutdown)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            due = self._expired(self._clock(), everything=True)
        for fields in due:
            self._report(fields)


class Suppressed(Exception):  # noqa: N818 - a control-flow signal, like structlog's DropEvent
    """Raised by :class:`ErrorDeduplicator` for a line not to write (the chain drops it quietly)."""
