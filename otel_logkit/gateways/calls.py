"""One gateway call's life: its span attributes, its log lines, and how a failure is recorded.

Shared by the HTTP client hooks (``hooks.py``) and the explicit :func:`gateway` wrapper, so
that a call looks the same in spans and logs whichever way it was made.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec

import structlog
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import Span, Status, StatusCode

from otel_logkit import _failsafe
from otel_logkit import attributes as attr
from otel_logkit.redact import Redactor
from otel_logkit.redact.text import truncate_bytes


def logger() -> Any:
    """The ``otel_logkit.gateways`` logger, looked up on each use.

    A module-level logger cached by ``cache_logger_on_first_use`` before ``configure()`` (or a
    test's ``capture_logs``) would keep a stale processor chain.
    """
    return structlog.get_logger("otel_logkit.gateways")


P = ParamSpec("P")
SMS_KIND = "sms"


@dataclass(slots=True)
class CallState:
    """What a request hook learnt about a gateway call, kept until the call ends."""

    kind: str
    operation: str
    params: str
    started: float = field(default_factory=time.perf_counter)
    finished: bool = False

    def duration_ms(self) -> float:
        """Milliseconds since the call started, rounded to 0.1 ms."""
        return round((time.perf_counter() - self.started) * 1000, 1)


# The gateway call in progress in this thread or task, with its span. The request hook, the
# failure observer and the response hook of one call all run in the same context; a ContextVar
# (unlike a span-keyed map) also keeps concurrent calls apart when spans are non-recording and
# all share OpenTelemetry's INVALID_SPAN.
_CURRENT: ContextVar[tuple[Span, CallState] | None] = ContextVar("otel_logkit.gateway_call", default=None)


def failsafe(name: str, span: Span | None, func: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    """Run a hook; a failure is recorded on the span and reported once, never raised into the app.

    Args:
        name: the hook's name, used to report each failing hook once.
        span: the span to mark with ``otel_logkit.hook_error``, if any.
        func: the hook body.
    """
    try:
        func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
        with contextlib.suppress(Exception):
            if span is not None and span.is_recording():
                span.set_attribute(attr.HOOK_ERROR, type(exc).__qualname__)
        _failsafe.report(f"gateway hook {name}", exc)


def start_call(span: Span, kind: str, operation: str, params: str, *, span_name: str | None) -> CallState:
    """Name and annotate the span of a gateway call, remember it, and log the DEBUG "call" line."""
    state = CallState(kind=kind, operation=operation, params=params)
    if span.is_recording():
        if span_name:
            span.update_name(span_name)
        span.set_attribute(attr.GATEWAY_KIND, kind)
        span.set_attribute(attr.GATEWAY_OPERATION, operation)
        if params:
            span.set_attribute(attr.GATEWAY_PARAMS, params)
    _CURRENT.set((span, state))
    logger().debug("gateway call", gateway=kind, operation=operation, params=params)
    return state


def lookup(span: Span) -> CallState | None:
    """The gateway call carried by ``span`` in this context, if any and not yet finished."""
    current = _CURRENT.get()
    if current is None or current[0] is not span or current[1].finished:
        return None
    return current[1]


def finish_response(span: Span, state: CallState, status_code: int) -> None:
    """Record the response: status on the span, DEBUG line, WARNING/ERROR line when ≥ 400."""
    state.finished = True
    duration = state.duration_ms()
    if span.is_recording():
        span.set_attribute(attr.GATEWAY_STATUS_CODE, status_code)
        span.set_attribute(attr.GATEWAY_DURATION_MS, duration)
    logger().debug(
        "gateway response", gateway=state.kind, operation=state.operation, status_code=status_code,
        duration_ms=duration, params=state.params,
    )  # fmt: skip
    if status_code >= 400:
        error_code = f"http_{status_code}"
        if span.is_recording():
            span.set_attribute(attr.GATEWAY_ERROR_CODE, error_code)
            _set_error_type(span, str(status_code))
            span.set_status(Status(StatusCode.ERROR, f"{state.kind} gateway answered {status_code}"))
        log = logger().warning if status_code < 500 else logger().error
        log(
            "gateway call failed", gateway=state.kind, operation=state.operation, status_code=status_code,
            error_code=error_code, duration_ms=duration, params=state.params,
        )  # fmt: skip


def finish_exception(span: Span, state: CallState, exc: BaseException) -> None:
    """Record a call that raised (timeout, refused connection, ...): attributes and an ERROR line."""
    state.finished = True
    duration = state.duration_ms()
    error_code = error_code_for(exc)
    if span.is_recording():
        span.set_attribute(attr.GATEWAY_ERROR_CODE, error_code)
        span.set_attribute(attr.GATEWAY_DURATION_MS, duration)
        _set_error_type(span, type(exc).__qualname__)
    logger().error(
        "gateway call failed", gateway=state.kind, operation=state.operation, error_code=error_code,
        error_type=type(exc).__qualname__, duration_ms=duration, params=state.params,
    )  # fmt: skip


def error_code_for(exc: BaseException) -> str:
    """``timeout``, ``connection_error`` or ``error``, judged from the exception's class names."""
    names = [cls.__name__ for cls in type(exc).__mro__]
    if any("Timeout" in name for name in names) or isinstance(exc, TimeoutError):
        return "timeout"
    if any(name in ("ConnectionError", "ConnectError", "NetworkError") for name in names):
        return "connection_error"
    if isinstance(exc, ConnectionError | OSError):
        return "connection_error"
    return "error"


def _set_error_type(span: Span, value: str) -> None:
    existing = getattr(span, "attributes", None)
    if not existing or ERROR_TYPE not in existing:
        span.set_attribute(ERROR_TYPE, value)


def params_summary(
    redactor: Redactor, query: str, body: bytes | str | None, content_type: str | None, *, sms: bool
) -> str:
    """``?query body`` — both redacted (SMS rules on SMS gateways), truncated to the summary size."""
    parts = []
    if query:
        parts.append("?" + redactor.redact_query(query, sms=sms))
    if body:
        parts.append(redactor.summarize_body(body, content_type, sms=sms))
    return truncate_bytes(" ".join(parts), redactor.max_bytes) if parts else ""


def operation_name(method: str, path: str, redactor: Redactor) -> str:
    """``POST /v1/charges``: the method and the redacted path (no query)."""
    return f"{method.upper()} {redactor.redact_text(path or '/')}"
