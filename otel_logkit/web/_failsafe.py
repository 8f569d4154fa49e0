"""Containment for otel-logkit's own web telemetry: a failure is reported once, never reaches the app."""

from __future__ import annotations

import logging
import os
import threading

from opentelemetry import trace

_logger = logging.getLogger("otel_logkit.web")
_reported: set[str] = set()
_lock = threading.Lock()

raise_errors: bool | None = None
"""Force (``True``) or forbid (``False``) re-raising; ``None`` re-raises only under pytest."""


def _should_raise() -> bool:
    if raise_errors is not None:
        return raise_errors
    return "PYTEST_CURRENT_TEST" in os.environ


def report(where: str, exc: Exception) -> None:
    """Record ``exc`` on the current span and log it once per ``where``; re-raise under pytest.

    Call it from an ``except Exception`` block around telemetry code, never around the app's own
    code: the app's exceptions must pass through unmodified.

    Args:
        where: a short stable name of the failing step, e.g. ``"access line"``.
        exc: the exception raised by otel-logkit's own code.

    Raises:
        Exception: ``exc`` itself, when running under pytest (so that bugs surface in tests).
    """
    if _should_raise():
        raise exc
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc)
        with _lock:
            first = where not in _reported
            _reported.add(where)
        if first:
            _logger.warning(
                "otel-logkit web telemetry failed in %s (reported once): %s: %s",
                where,
                type(exc).__name__,
                exc,
            )
    except Exception:  # noqa: BLE001, S110 - the report itself must never reach the app
        pass


def reset() -> None:
    """Forget which failures were reported (tests)."""
    with _lock:
        _reported.clear()
