"""The one containment for otel-logkit's own code: a failure is reported once, never reaches the app.

Web middleware, gateway hooks, jobs and the logging chain all report through :func:`report`.
A failure is recorded on the current span and written once per step as a WARNING line; the
app's own exceptions never pass through here.

otel-logkit's own test suite sets :data:`raise_errors` so that its bugs surface in its tests.
Nothing else turns it on: an app's test run under otel-logkit behaves as in production.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace

_logger = logging.getLogger("otel_logkit")
_reported: set[str] = set()
_lock = threading.Lock()

raise_errors = False
"""Re-raise otel-logkit's own errors instead of containing them (set by otel-logkit's tests only)."""


def report(where: str, exc: BaseException) -> None:
    """Record ``exc`` on the current span and log it once per ``where``.

    Call it from an ``except Exception`` block around telemetry code, never around the app's own
    code: the app's exceptions must pass through unmodified.

    Args:
        where: a short stable name of the failing step, e.g. ``"access line"``.
        exc: the exception raised by otel-logkit's own code.

    Raises:
        BaseException: ``exc`` itself, when :data:`raise_errors` is set (otel-logkit's tests).
    """
    if raise_errors:
        raise exc
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc)
        if first_time(where):
            _logger.warning(
                "otel-logkit failed in %s (reported once; the app is unaffected): %s: %s",
                where,
                type(exc).__name__,
                exc,
            )
    except Exception:  # noqa: BLE001, S110 - the report itself must never reach the app
        pass


def first_time(where: str) -> bool:
    """Tell whether ``where`` is reported for the first time (and remember it)."""
    with _lock:
        first = where not in _reported
        _reported.add(where)
    return first


def reset() -> None:
    """Forget which failures were reported (tests)."""
    with _lock:
        _reported.clear()
