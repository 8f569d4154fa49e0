"""``gateway(...)``: a gateway span around SDK calls whose HTTP layer otel-logkit cannot see."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from otel_logkit.gateways import calls
from otel_logkit.redact import Redactor

if TYPE_CHECKING:
    from opentelemetry.trace import Span


_TRACER_NAME = "otel_logkit.gateways"
_fallback: Redactor | None = None


def _current_redactor() -> Redactor:
    """The process's one redactor (:func:`otel_logkit.configure`'s); built-in rules before that."""
    global _fallback  # noqa: PLW0603 - created once, only when configure() never ran
    from otel_logkit import setup

    configured = setup.current_redactor()
    if configured is not None:
        return configured
    if _fallback is None:
        _fallback = Redactor()
    return _fallback


class GatewayCall:
    """A gateway call in progress: a CLIENT span with the gateway attributes.

    Use it as a sync or async context manager. An exception raised inside is recorded (span
    status, ``error_code``, ERROR line) and propagates unchanged.

    Args:
        kind: the gateway kind, e.g. ``payment`` or ``sms``.
        operation: what is called, e.g. ``charge`` or ``messages.create``.
        params: the call's parameters; only a redacted, truncated summary is recorded.
        tracer_provider: where the span goes (default: the global provider).
    """

    def __init__(
        self,
        kind: str,
        operation: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.kind = kind
        self.operation = operation or "call"
        self.params = params
        self._tracer = trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)
        self._span_cm: AbstractContextManager[Span] | None = None
        self.span: Span = trace.INVALID_SPAN
        self._state: calls.CallState | None = None

    def record_response(self, status_code: int) -> None:
        """Record the gateway's answer; a status ≥ 400 is logged and marked as a failure."""
        if self._state is not None and not self._state.finished:
            calls.finish_response(self.span, self._state, status_code)

    def __enter__(self) -> GatewayCall:
        """Start the span and log the DEBUG "gateway call" line."""
        self._span_cm = self._tracer.start_as_current_span(
            f"{self.kind} {self.operation}", kind=SpanKind.CLIENT, end_on_exit=True
        )
        self.span = self._span_cm.__enter__()
        calls.failsafe("gateway.enter", self.span, self._start)
        return self

    def _start(self) -> None:
        redactor = _current_redactor()
        params = redactor.summarize_params(self.params, sms=self.kind == calls.SMS_KIND) if self.params else ""
        self._state = calls.start_call(self.span, self.kind, self.operation, params, span_name=None)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Finish the call; an exception is recorded and left to propagate."""
        state = self._state
        if state is not None and not state.finished:
            if exc is not None and isinstance(exc, Exception):
                calls.failsafe("gateway.exit", self.span, calls.finish_exception, self.span, state, exc)
            else:
                state.finished = True
                calls.logger().debug(
                    "gateway response", gateway=state.kind, operation=state.operation,
                    duration_ms=state.duration_ms(),
                )  # fmt: skip
        if self._span_cm is not None:
            self._span_cm.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> GatewayCall:
        """Async form of ``__enter__``."""
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Async form of ``__exit__``."""
        self.__exit__(exc_type, exc, tb)


def gateway(
    kind: str,
    operation: str | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
) -> GatewayCall:
    """Wrap an SDK call to a gateway in a span with redacted parameters.

    Example::

        with gateway("payment", operation="charge", params={"amount": 1000, "card": card}) as call:
            result = stripe.Charge.create(...)
            call.record_response(200)

    Args:
        kind: the gateway kind, e.g. ``payment`` or ``sms`` (``sms`` applies the SMS rules).
        operation: what is called, e.g. ``charge``; the span is named ``"{kind} {operation}"``.
        params: the call's parameters; only a redacted, truncated summary is recorded.
        tracer_provider: where the span goes (default: the global provider).
    """
    return GatewayCall(kind, operation, params, tracer_provider=tracer_provider)
