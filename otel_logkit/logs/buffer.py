"""The request buffer: a request's lines below the log level, held and written only if it fails.

With ``LOGKIT_REQUEST_BUFFER=DEBUG`` in prod (``LOGKIT_LOG_LEVEL=WARNING``), each request (and
each job) gets a :class:`RequestBuffer` in :data:`otel_logkit.context.log_buffer`. The log
chain builds a line below the log level as usual (its timestamp, ids and fields are those of
the moment it was logged), then hands it to the buffer instead of rendering it. When the request
ends with a 5xx, an unhandled exception, or after ``LOGKIT_SLOW_REQUEST_MS``, the held lines are
redacted, exported and written in order, marked ``buffered: true``; otherwise they are dropped.
Lines logged after that decision (background tasks) follow it: written, or dropped.

Bounded per buffer (``LOGKIT_REQUEST_BUFFER_MAX`` lines, the oldest dropped first, the count
reported on the first written line as ``buffer_dropped``) and across all buffers of the process
(:data:`TOTAL_LINES`), so thousands of slow requests cannot grow memory without bound.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from structlog.typing import EventDict, WrappedLogger

TOTAL_LINES = 100_000
"""Lines held by all request buffers of a process together; past it new lines are dropped."""

Finish = Callable[[WrappedLogger, str, EventDict], Any]
"""Redacts, exports and renders one held event; returns the line to write."""


class _Budget:
    """The process-wide count of held lines: a bound, not an account (no lock on the hot path;
    concurrent updates may miscount by a few lines)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self) -> bool:
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self, count: int) -> None:
        self.held = max(0, self.held - count)


_budget = _Budget(TOTAL_LINES)

_OPEN, _WRITE, _DISCARD = 0, 1, 2


class RequestBuffer:
    """The held lines of one request or job.

    Args:
        max_lines: ``LOGKIT_REQUEST_BUFFER_MAX``.
        finish: turns a held event into its line (redaction, export, rendering).
        write: writes one line (the console).
    """

    __slots__ = ("_dropped", "_finish", "_lines", "_lock", "_state", "_write", "max_lines")

    def __init__(self, max_lines: int, finish: Finish, write: Callable[[str], None]) -> None:
        self._lines: collections.deque[tuple[WrappedLogger, str, EventDict]] = collections.deque()
        self._dropped = 0
        self._state = _OPEN
        self._lock = threading.Lock()
        self._finish = finish
        self._write = write
        self.max_lines = max_lines

    @property
    def dropped(self) -> int:
        """Lines dropped so far because the buffer (or the process-wide budget) was full."""
        return self._dropped

    def __len__(self) -> int:
        return len(self._lines)

    def hold(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> bool:
        """Keep a line; ``False`` when the request was already decided as failed (write it now)."""
        with self._lock:
            if self._state == _WRITE:
                event_dict["buffered"] = True
                return False
            if self._state == _DISCARD:
                return True
            if len(self._lines) >= self.max_lines:
                self._lines.popleft()
                self._dropped += 1
                _budget.give_back(1)
            if not _budget.take():
                self._dropped += 1
                return True
            self._lines.append((logger, method_name, event_dict))
            return True

    def flush(self) -> None:
        """The request failed or was slow: write the held lines in order, and any later ones."""
        with self._lock:
            if self._state != _OPEN:
                return
            self._state = _WRITE
            lines, self._lines = self._lines, collections.deque()
            dropped = self._dropped
        _budget.give_back(len(lines))
        for index, (logger, method_name, event_dict) in enumerate(lines):
            event_dict["buffered"] = True
            if index == 0 and dropped:
                event_dict["buffer_dropped"] = dropped
            line = self._finish(logger, method_name, event_dict)
            if line:
                self._write(line)

    def discard(self) -> None:
        """The request went well: drop the held lines, and any later ones."""
        with self._lock:
            if self._state != _OPEN:
                return
            self._state = _DISCARD
            count = len(self._lines)
            self._lines.clear()
        _budget.give_back(count)


class BufferPolicy:
    """What the chain and the middlewares need to run request buffers (one per configuration).

    Args:
        below: the log level; lines under it are held.
        at_least: the buffer level; lines under it are dropped as always.
        max_lines: ``LOGKIT_REQUEST_BUFFER_MAX``.
        slow_ms: ``LOGKIT_SLOW_REQUEST_MS``.
    """

    def __init__(self, below: int, at_least: int, max_lines: int, slow_ms: float) -> None:
        self.below = below
        self.at_least = at_least
        self.max_lines = max_lines
        self.slow_ms = slow_ms
        self.finish: Finish | None = None
        self.write: Callable[[str], None] | None = None

    def new_buffer(self) -> RequestBuffer | None:
        """A buffer for a request or job that starts now (``None`` before the chain is wired)."""
        if self.finish is None or self.write is None:
            return None
        return RequestBuffer(self.max_lines, self.finish, self.write)

    def decide(self, buffer: RequestBuffer | None, *, failed: bool, duration_ms: float) -> None:
        """Write the trail of a failed or slow request, drop it otherwise."""
        if buffer is None:
            return
        if failed or duration_ms >= self.slow_ms:
            buffer.flush()
        else:
            buffer.discard()


_policy: BufferPolicy | None = None


def policy() -> BufferPolicy | None:
    """The request buffer configured by ``LOGKIT_REQUEST_BUFFER``, or ``None`` when it is off."""
    return _policy


def set_policy(value: BufferPolicy | None) -> None:
    """Install (or remove, with ``None``) the process's buffer policy (the log chain's set-up)."""
    global _policy  # noqa: PLW0603 - one configuration per process
    _policy = value


def new_buffer() -> RequestBuffer | None:
    """A buffer for a request, job or task starting now, when ``LOGKIT_REQUEST_BUFFER`` is on."""
    return _policy.new_buffer() if _policy is not None else None
