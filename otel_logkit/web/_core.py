"""What the ASGI and WSGI middlewares share: per-request state and the access and error lines."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import time
from contextvars import Token
from typing import Any, TypeAlias

import structlog
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import NonRecordingSpan, SpanContext

from otel_logkit import _failsafe, attributes, context
from otel_logkit.config import Settings
from otel_logkit.logs.buffer import RequestBuffer
from otel_logkit.logs.buffer import policy as buffer_policy
from otel_logkit.web.body import BodyCapture, BodySummarizer

ACCESS_LOGGER = "otel_logkit.access"
"""Logger name of the access line (one per request)."""

ERROR_LOGGER = "otel_logkit.error"
"""Logger name of the unhandled-exception line."""

BAGGAGE_KEY = "request_id"
"""W3C baggage entry carrying the request id to the next service."""

USER_AGENT_MAX = 512
"""Characters of ``User-Agent`` kept on the access line."""


class RequestState:
    """Everything known about one request, shared by the outer middleware and the inner probe."""

    __slots__ = (
        "body",
        "buffer",
        "client_gone",
        "client_ip",
        "excluded",
        "finished",
        "inner_token",
        "logged_exc",
        "method",
        "owner",
        "path",
        "request_id",
        "route",
        "span_context",
        "start_ns",
        "status_code",
        "user_agent",
    )

    def __init__(
        self,
        *,
        request_id: str,
        method: str,
        path: str,
        client_ip: str | None,
        user_agent: str | None,
        body: BodyCapture,
        excluded: bool,
        owner: RequestLogging,
    ) -> None:
        self.owner = owner
        self.request_id = request_id
        self.method = method
        self.path = path
        self.client_ip = client_ip
        self.user_agent = user_agent
        self.body = body
        self.excluded = excluded
        self.start_ns = time.perf_counter_ns()
        self.status_code: int | None = None
        self.route: str | None = None
        self.span_context: SpanContext | None = None
        self.logged_exc: BaseException | None = None
        self.finished = False
        self.client_gone = False
        self.buffer: RequestBuffer | None = None
        self.inner_token: Token[otel_context.Context] | None = None


_frozen_in: set[int] = set()


def freeze_start_up_objects() -> None:
    """``LOGKIT_GC_FREEZE``: once per process, before its first request (the middleware is built
    then), move what start-up left alive to the permanent generation (``gc.freeze()``)."""
    pid = os.getpid()
    if pid not in _frozen_in:
        _frozen_in.add(pid)
        gc.freeze()


class RequestLogging:
    """Writes the access and error lines of requests, configured once per middleware.

    Access line levels: INFO below 500 (4xx included: client mistakes and scanners are normal
    traffic, filter on ``status_code``); ERROR for a 5xx the app returned on purpose; WARNING
    for a 5xx caused by an unhandled exception, whose ERROR line is the exception line, so
    that each failed request yields exactly one ERROR line.

    Args:
        settings: the effective settings (body summary size, excluded URLs).
        redactor: summarizes request bodies; ``None``: the configured redactor (one per process).
    """

    def __init__(self, settings: Settings, redactor: BodySummarizer | None) -> None:
        if settings.gc_freeze:
            freeze_start_up_objects()
        self.settings = settings
        self.redactor: BodySummarizer = redactor if redactor is not None else configured_redactor(settings)
        patterns = settings.excluded_urls
        self._excluded = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self._access = structlog.get_logger(ACCESS_LOGGER)
        self._error = structlog.get_logger(ERROR_LOGGER)

    def is_excluded(self, path: str, query: str) -> bool:
        """Whether the request gets no access line (``LOGKIT_EXCLUDED_URLS``, searched in path and URL)."""
        if self._excluded is None:
            return False
        url = f"{path}?{query}" if query else path
        return bool(self._excluded.search(path) or self._excluded.search(url))

    def enter_span(self, state: RequestState) -> Token[otel_context.Context] | None:
        """Inside the server span: remember it, tag it, and put the id in baggage; return the token."""
        try:
            span = trace.get_current_span()
            span_context = span.get_span_context()
            if span_context.is_valid:
                state.span_context = span_context
                if span.is_recording():
                    span.set_attribute(attributes.REQUEST_ID, state.request_id)
            return otel_context.attach(baggage.set_baggage(BAGGAGE_KEY, state.request_id))
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("request span", exc)
            return None

    def log_error(self, state: RequestState, exc: BaseException) -> None:
        """Write the ERROR line for an unhandled exception, once per exception and request."""
        if state.logged_exc is exc:
            return
        state.logged_exc = exc
        mark_logged(exc)
        try:
            if state.buffer is not None:
                state.buffer.flush()  # the request failed: its trail goes before its error line
            with _SpanScope(state):
                self._error.error(
                    "unhandled exception",
                    exc_info=exc,
                    error_type=type(exc).__name__,
                    request_id=state.request_id,
                    method=state.method,
                    path=state.path,
                    route=state.route,
                    request_body=state.body.summary(self.redactor),
                )
        except Exception as error:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("error line", error)

    def log_access(self, state: RequestState, *, complete: bool) -> None:
        """Write the access line, once per request, unless the URL is excluded."""
        if state.finished:
            return
        state.finished = True
        try:
            status = state.status_code
            if status is None:
                # No response started: the client left (cancelled, disconnected) - nginx's 499,
                # normal traffic - or the app returned none and the server answers 500 itself.
                status = CLIENT_CLOSED_REQUEST if state.client_gone and state.logged_exc is None else 500
            duration_ms = round((time.perf_counter_ns() - state.start_ns) / 1e6, 3)
            policy = buffer_policy()
            if state.buffer is not None and policy is not None:
                failed = status >= 500 or state.logged_exc is not None
                policy.decide(state.buffer, failed=failed, duration_ms=duration_ms)
            if state.excluded:
                return
            fields: dict[str, Any] = {
                "method": state.method,
                "route": state.route,
                "path": state.path,
                "status_code": status,
                "duration_ms": duration_ms,
                "client_ip": state.client_ip,
                "user_agent": state.user_agent,
                "request_id": state.request_id,
            }
            if not complete:
                fields["response_incomplete"] = True
            with _SpanScope(state):
                if status < 500:
                    self._access.info("request", **fields)
                elif state.logged_exc is None:
                    self._access.error("request", **fields)
                else:
                    # The exception already has its ERROR line: one ERROR line per failure.
                    self._access.warning("request", **fields)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("access line", exc)


def configured_settings() -> Settings:
    """The settings :func:`otel_logkit.configure` put in force (its overrides included), else the env's."""
    from otel_logkit import setup

    return setup.current_settings() or Settings.from_env()


def configured_redactor(settings: Settings) -> BodySummarizer:
    """The process's one redactor once configured; before that, one built from ``settings``."""
    from otel_logkit import setup
    from otel_logkit.redact import Redactor

    return setup.current_redactor() or Redactor.from_settings(settings)


CLIENT_CLOSED_REQUEST = 499
"""``status_code`` of the access line when the client left before any response started (as nginx)."""
_LOGGED_MARK = "__otel_logkit_logged__"


def mark_logged(exc: BaseException) -> None:
    """Mark ``exc`` as reported by an error line, so servers' duplicate lines can be dropped."""
    with contextlib.suppress(AttributeError, TypeError):  # an exception type without a __dict__
        setattr(exc, _LOGGED_MARK, True)


def was_logged(exc: BaseException | None) -> bool:
    """Whether ``exc`` already has its error line."""
    return exc is not None and getattr(exc, _LOGGED_MARK, False) is True


class _SpanScope:
    """Make the request's server span current while a line is written, so it carries its ids."""

    __slots__ = ("_state", "_token")

    def __init__(self, state: RequestState) -> None:
        self._state = state
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> None:
        span_context = self._state.span_context
        if span_context is not None and trace.get_current_span().get_span_context() != span_context:
            self._token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)


Bound: TypeAlias = "Token[str | None]"


def bind_request_id(request_id: str) -> Bound:
    """Set the request id in :mod:`otel_logkit.context`, the one place every line reads it from."""
    return context.request_id.set(request_id)


def unbind_request_id(bound: Bound) -> None:
    """Undo :func:`bind_request_id` (contained: a failure here must not replace the app's outcome)."""
    try:
        context.request_id.reset(bound)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
        _failsafe.report("request id reset", exc)
