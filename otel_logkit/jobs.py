"""Background and scheduled jobs: a span, a ``job_id`` bound to every line, accounting, outcome lines.

Usable as a context manager (sync or async) and as a decorator; the object it yields counts work::

    with otel_logkit.job("send-reminders", tenant="acme") as run:
        for reminder in due:
            try:
                send(reminder)
            except GatewayError as error:
                run.failed(reminder.id, error)
            else:
                run.processed()

    @otel_logkit.job("nightly-report")
    async def nightly_report() -> None:
        otel_logkit.job.current().processed(n=rows)

The finish line (``job finished``, ``job finished with failures`` or ``job failed``) carries
``processed``, ``failed``, ``failed_ids`` (the first :data:`FAILED_IDS_MAX`, then
``failed_ids_truncated: true``), ``started_at``, ``finished_at`` and ``duration_ms``.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import Token
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from otel_logkit import context
from otel_logkit.logs.buffer import RequestBuffer, new_buffer
from otel_logkit.logs.buffer import policy as buffer_policy

F = TypeVar("F", bound=Callable[..., Any])
_logger = structlog.get_logger("otel_logkit.jobs")

FAILED_IDS_MAX = 100
"""Failed item ids kept on the finish line; beyond it the line says ``failed_ids_truncated``."""


def iso_timestamp(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601, UTC, milliseconds, ``Z`` (the log line's format)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _item_id(item_id: Any) -> Any:
    return item_id if isinstance(item_id, (str, int)) and not isinstance(item_id, bool) else str(item_id)


class Tally:
    """Thread-safe counts of one unit of work: items processed, items failed and their ids."""

    __slots__ = ("_lock", "failed_count", "failed_ids", "processed_count", "truncated")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processed_count = 0
        self.failed_count = 0
        self.failed_ids: list[Any] = []
        self.truncated = False

    def add_processed(self, n: int) -> None:
        """Count ``n`` more processed items."""
        with self._lock:
            self.processed_count += n

    def add_failed(self, item_id: Any) -> None:
        """Count one failed item and keep its id while there is room."""
        with self._lock:
            self.failed_count += 1
            if len(self.failed_ids) < FAILED_IDS_MAX:
                self.failed_ids.append(_item_id(item_id))
            else:
                self.truncated = True

    def fields(self) -> dict[str, Any]:
        """The accounting fields of a finish line."""
        with self._lock:
            fields: dict[str, Any] = {
                "processed": self.processed_count,
                "failed": self.failed_count,
                "failed_ids": list(self.failed_ids),
            }
            if self.truncated:
                fields["failed_ids_truncated"] = True
        return fields


class job:  # noqa: N801 - used like a function: `with job(...)`, `@job(...)`
    """Run a unit of background work with its own span, ``job``/``job_id`` fields and outcome lines.

    Args:
        name: the job's name, e.g. ``nightly-report``; the span is named ``job {name}``.
        fields: extra fields bound to every line logged inside the job.

    The job's exceptions are logged once at ERROR (with traceback) and propagate unchanged.
    Nested jobs each count their own items; one job may be counted from many threads.
    """

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = name
        self.fields = fields
        self.job_id = ""
        self.tally = Tally()
        self._span: Span | None = None
        self._span_token: Any = None
        self._tokens: Mapping[str, Token[Any]] = {}
        self._current_token: Token[job | None] | None = None
        self._buffer: RequestBuffer | None = None
        self._buffer_token: Token[RequestBuffer | None] | None = None
        self._started = 0.0
        self._started_at = 0.0

    @staticmethod
    def current() -> job | None:
        """The innermost job running in this context (thread or task), or ``None``."""
        return context.current_job.get()

    def processed(self, n: int = 1) -> None:
        """Count ``n`` items done (thread-safe)."""
        self.tally.add_processed(n)

    def failed(self, item_id: Any, error: BaseException | str | None = None) -> None:
        """Count one failed item; with an ``error``, also write one ERROR line naming the item.

        Args:
            item_id: the item's id, kept on the finish line (the first 100).
            error: the exception (its traceback is logged) or a reason.
        """
        self.tally.add_failed(item_id)
        if error is None:
            return
        fields: dict[str, Any] = {"item_id": _item_id(item_id)}
        if isinstance(error, BaseException):
            fields["error_type"] = type(error).__name__
            fields["error"] = str(error)
            if error.__traceback__ is not None:
                fields["exc_info"] = (type(error), error, error.__traceback__)
        else:
            fields["error"] = str(error)
        _logger.error("job item failed", **fields)

    def __enter__(self) -> job:
        self.job_id = uuid.uuid4().hex
        tracer = trace.get_tracer("otel_logkit.jobs")
        self._span = tracer.start_span(f"job {self.name}", attributes={"job.name": self.name, "job.id": self.job_id})
        self._span_token = trace.use_span(self._span, end_on_exit=False)
        self._span_token.__enter__()
        self._tokens = structlog.contextvars.bind_contextvars(job=self.name, job_id=self.job_id, **self.fields)
        self._current_token = context.current_job.set(self)
        self._buffer = new_buffer()
        self._buffer_token = context.log_buffer.set(self._buffer) if self._buffer is not None else None
        self._started_at = time.time()
        self._started = time.perf_counter()
        _logger.info("job started", started_at=iso_timestamp(self._started_at))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration_ms = round((time.perf_counter() - self._started) * 1000, 3)
        span = self._span
        fields = self.tally.fields()
        fields.update(
            started_at=iso_timestamp(self._started_at),
            finished_at=iso_timestamp(self._started_at + duration_ms / 1000),
            duration_ms=duration_ms,
        )
        try:
            policy = buffer_policy()
            if self._buffer is not None and policy is not None:
                # A failed job writes its held trail (LOGKIT_REQUEST_BUFFER) before its last line.
                policy.decide(self._buffer, failed=exc is not None or bool(fields["failed"]), duration_ms=duration_ms)
            if span is not None:
                span.set_attributes({"job.processed": fields["processed"], "job.failed": fields["failed"]})
            if exc is not None:
                _logger.error("job failed", status="error", exc_info=(exc_type, exc, tb), **fields)
                if span is not None:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            elif fields["failed"]:
                _logger.error("job finished with failures", status="partial", **fields)
                if span is not None:
                    span.set_status(Status(StatusCode.ERROR, "failed items"))
            else:
                _logger.info("job finished", status="ok", **fields)
        finally:
            if self._buffer_token is not None:
                context.log_buffer.reset(self._buffer_token)
            if self._current_token is not None:
                context.current_job.reset(self._current_token)
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
        """Decorate a sync or async function: each call runs as one job (see :meth:`current`)."""
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
