"""Background and scheduled jobs: a span, a ``job_id`` bound to every line, start/finish lines.

Usable as a context manager (sync or async) and as a decorator::

    with otel_logkit.job("nightly-report", tenant="acme"):
        ...

    @otel_logkit.job("send-reminders")
    async def send_reminders() -> None: ...
"""

from __future__ import annotations

import functools
import inspect
import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

F = TypeVar("F", bound=Callable[..., Any])
_logger = structlog.get_logger("otel_logkit.jobs")


class job:  # noqa: N801 - used like a function: `with job(...)`, `@job(...)`
    """Run a unit of background work with its own span, ``job``/``job_id`` fields and outcome lines.

    Args:
        name: the job's name, e.g. ``nightly-report``; the span is named ``job {name}``.
        fields: extra fields bound to every line logged inside the job.

    The job's exceptions are logged once at ERROR (with traceback) and propagate unchanged.
    """

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = name
        self.fields = fields
        self.job_id = ""
        self._span: Span | None = None
        self._span_token: Any = None
        self._tokens: Mapping[str, Token[Any]] = {}
        self._started = 0.0

    def __enter__(self) -> job:
        self.job_id = uuid.uuid4().hex
        tracer = trace.get_tracer("otel_logkit.jobs")
        self._span = tracer.start_span(f"job {self.name}", attributes={"job.name": self.name, "job.id": self.job_id})
        self._span_token = trace.use_span(self._span, end_on_exit=False)
        self._span_token.__enter__()
        self._tokens = structlog.contextvars.bind_contextvars(job=self.name, job_id=self.job_id, **self.fields)
        self._started = time.perf_counter()
        _logger.info("job started")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration_ms = round((time.perf_counter() - self._started) * 1000, 3)
        span = self._span
        try:
            if exc is None:
                _logger.info("job finished", duration_ms=duration_ms, status="ok")
            else:
                _logger.error("job failed", duration_ms=duration_ms, status="error", exc_info=(exc_type, exc, tb))
                if span is not None:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        finally:
            structlog.contextvars.reset_contextvars(**self._tokens)
            self._span_token.__exit__(None, None, None)
            if span is not None:
                span.end()

    async def __aenter__(self) -> job:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        """Decorate a sync or async function: each call runs as one job."""
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with job(self.name, **self.fields):
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with job(self.name, **self.fields):
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]
