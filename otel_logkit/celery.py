"""Celery: the contract's JSON lines from the worker and its pool children, one context per task.

``otel-logkit-instrument celery -A app worker`` (or plain ``opentelemetry-instrument``) installs
:class:`CeleryInstrumentor` when the app imports ``celery``. It

- keeps Celery from reconfiguring logging (a ``setup_logging`` receiver: no root-logger hijack,
  no stdout redirection), so the worker's, Celery's and the tasks' lines share one JSON shape;
- turns the start-up banner into one JSON line and drops Celery's own per-task outcome lines
  (``succeeded in``, ``raised unexpected``, ``retry``), which repeat ours and carry raw arguments;
- applies ``opentelemetry-instrumentation-celery`` (task spans, trace propagation);
- carries the enqueuing request's ``request_id`` in the task's headers and binds ``task_name``,
  ``task_id``, ``task_retries`` and ``request_id`` to every line of the task;
- logs each run like a job: ``task started``, then ``task finished`` (INFO), ``task failed``
  (ERROR, traceback, redacted ``task_args``) or ``task retry`` (WARNING, ``retries``, ``reason``);
- flushes a pool child's pending records when it exits (warm shutdown, ``--max-tasks-per-child``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any

import structlog
import wrapt

from otel_logkit import _failsafe, context
from otel_logkit.logs.buffer import RequestBuffer, new_buffer
from otel_logkit.logs.buffer import policy as buffer_policy
from otel_logkit.web.request_id import sane_request_id

REQUEST_ID_HEADER = "otel_logkit_request_id"
"""Task message header carrying the enqueuing request's id to the worker."""

TASK_LOGGER = "otel_logkit.celery"
"""Logger name of the task outcome lines and the worker start-up line."""

_logger = structlog.get_logger(TASK_LOGGER)
_CELERY_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.pool")
# The pool's DEBUG line prints the raw task message (arguments included) as one repr string.
_POOL_APPLY = "TaskPool: Apply %s (args:%s kwargs:%s)"
_SUCCESS = "SUCCESS"
_ORIGINALS: dict[str, Callable[..., Any]] = {}


class TaskRun:
    """One run of one task in this process: its bound fields, start time and outcome.

    Kept per task id, so that everything a task run needs (and a future per-task line buffer)
    has one place, from ``task_prerun`` to ``task_postrun``.
    """

    __slots__ = ("buffer", "buffer_token", "fields", "outcome_logged", "request_token", "started", "tokens")

    def __init__(self, fields: dict[str, Any], request_id: str | None) -> None:
        self.fields = fields
        self.started = time.perf_counter()
        self.outcome_logged = False
        self.tokens: Mapping[str, Token[Any]] = structlog.contextvars.bind_contextvars(**fields)
        self.request_token: Token[str | None] | None = context.request_id.set(request_id) if request_id else None
        # The request buffer (LOGKIT_REQUEST_BUFFER): a failed or slow task writes its held trail.
        self.buffer: RequestBuffer | None = new_buffer()
        self.buffer_token = context.log_buffer.set(self.buffer) if self.buffer is not None else None

    def decide(self, *, failed: bool) -> None:
        """Write the held trail of a failed or slow run, drop it otherwise."""
        policy = buffer_policy()
        if policy is not None:
            policy.decide(self.buffer, failed=failed, duration_ms=self.duration_ms())

    def duration_ms(self) -> float:
        """Milliseconds since the run started."""
        return round((time.perf_counter() - self.started) * 1000, 3)

    def close(self) -> None:
        """Unbind the run's fields."""
        if self.buffer_token is not None:
            context.log_buffer.reset(self.buffer_token)
        structlog.contextvars.reset_contextvars(**self.tokens)
        if self.request_token is not None:
            context.request_id.reset(self.request_token)


class _OutcomeFilter(logging.Filter):
    """Drops Celery's per-task outcome lines (ours replace them), the pool's raw-message DEBUG
    line, and the raw ``data`` extra of the lines it keeps."""

    def __init__(self) -> None:
        super().__init__()
        from celery.app import trace

        outcomes = (trace.LOG_SUCCESS, trace.LOG_FAILURE, trace.LOG_RETRY)
        self._dropped = frozenset(fmt.strip() for fmt in outcomes) | {_POOL_APPLY}

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is one of Celery's outcome lines."""
        if record.msg in self._dropped:
            return False
        # Celery passes the formatting context (raw args/kwargs reprs) as `extra={"data": ...}`.
        record.__dict__.pop("data", None)
        return True


class CeleryInstrumentor:
    """Wires otel-logkit into Celery (see the module docstring); applied by :func:`otel_logkit.configure`."""

    _instance: CeleryInstrumentor | None = None

    def __new__(cls) -> CeleryInstrumentor:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
            cls._instance._init()
        return cls._instance

    def _init(self) -> None:
        self.is_instrumented_by_opentelemetry = False
        self._redactor: Any = None
        self._runs: dict[str, TaskRun] = {}
        self._lock = threading.Lock()
        self._contrib: Any = None
        self._filter: _OutcomeFilter | None = None
        self._receivers: list[tuple[Any, Callable[..., Any]]] = []
        self._child_pid: int | None = None

    def instrument(self, *, tracer_provider: Any = None, redactor: Any = None, **kwargs: Any) -> None:
        """Connect the signal receivers and apply the contrib Celery instrumentation.

        Args:
            tracer_provider: the provider task spans go to.
            redactor: the :class:`otel_logkit.redact.Redactor` that summarises task arguments.
            kwargs: ignored (the instrumentor protocol).
        """
        if self.is_instrumented_by_opentelemetry:
            return
        from celery import signals

        self._redactor = redactor
        self._connect(signals.setup_logging, _keep_logging)
        self._connect(signals.celeryd_init, _capture_warnings)
        self._connect(signals.before_task_publish, _add_request_id)
        # Our postrun receiver runs before the contrib one ends the task span, so that the
        # finish line still carries the task's trace and span ids; prerun runs after it starts.
        self._connect(signals.task_postrun, self._task_postrun)
        self._connect(signals.task_failure, self._task_failure)
        self._connect(signals.task_retry, self._task_retry)
        self._instrument_contrib(tracer_provider)
        self._connect(signals.task_prerun, self._task_prerun)
        self._connect(signals.worker_process_init, self._process_init)
        self._connect(signals.worker_process_shutdown, _process_shutdown)
        self._filter = _OutcomeFilter()
        for name in _CELERY_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        wrapt.register_post_import_hook(_patch_banner, "celery.apps.worker")
        self.is_instrumented_by_opentelemetry = True

    def uninstrument(self, **kwargs: Any) -> None:
        """Disconnect everything :meth:`instrument` connected (tests)."""
        if not self.is_instrumented_by_opentelemetry:
            return
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)
        self._receivers.clear()
        if self._contrib is not None:
            self._contrib.uninstrument()
            self._contrib = None
        if self._filter is not None:
            for name in _CELERY_LOGGERS:
                logging.getLogger(name).removeFilter(self._filter)
        _unpatch_banner()
        self.is_instrumented_by_opentelemetry = False

    def _connect(self, signal: Any, receiver: Callable[..., Any]) -> None:
        signal.connect(receiver, weak=False)
        self._receivers.append((signal, receiver))

    def _instrument_contrib(self, tracer_provider: Any) -> None:
        try:
            from opentelemetry.instrumentation.celery import CeleryInstrumentor as ContribInstrumentor
        except ImportError:
            return  # traces need `pip install 'otel-logkit[celery]'`; the lines work without
        contrib = ContribInstrumentor()  # type: ignore[no-untyped-call]
        if not contrib.is_instrumented_by_opentelemetry:
            contrib.instrument(tracer_provider=tracer_provider)
            self._contrib = contrib

    # -- task runs ----------------------------------------------------------------------------
    def _task_prerun(self, task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
        if task_id is None or task is None:
            return
        try:
            request = task.request
            request_id = _request_id_of(request)
            fields: dict[str, Any] = {
                "task_name": task.name,
                "task_id": task_id,
                "task_retries": int(getattr(request, "retries", 0) or 0),
            }
            run = TaskRun(fields, request_id)  # the id in its one ContextVar, read by every line
            with self._lock:
                self._runs[task_id] = run
            _logger.info("task started")
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the task
            _failsafe.report("celery task start", exc)

    def _task_failure(
        self,
        task_id: str | None = None,
        exception: BaseException | None = None,
        args: Any = None,
        kwargs: Any = None,
        sender: Any = None,
        **extra: Any,
    ) -> None:
        try:
            run = self._runs.get(task_id or "")
            fields: dict[str, Any] = {"state": "FAILURE", "task_args": self._summary(args, kwargs)}
            if exception is not None:
                fields["error_type"] = type(exception).__name__
            if run is not None:
                run.outcome_logged = True
                fields["duration_ms"] = run.duration_ms()
                run.decide(failed=True)
            throws = tuple(getattr(sender, "throws", ()) or ())
            if throws and isinstance(exception, throws):
                # Declared in `Task.throws`: an expected outcome, as Celery itself treats it.
                _logger.info("task failed", error=str(exception), **fields)
            else:
                _logger.error("task failed", exc_info=exception, **fields)  # the chain reads the exception
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the task
            _failsafe.report("celery task failure", exc)

    def _task_retry(self, request: Any = None, reason: Any = None, **kwargs: Any) -> None:
        try:
            task_id = getattr(request, "id", None) or ""
            run = self._runs.get(task_id)
            retries = int(getattr(request, "retries", 0) or 0) + 1
            cause = getattr(reason, "exc", None)
            fields: dict[str, Any] = {"state": "RETRY", "retries": retries, "reason": str(reason)}
            if isinstance(cause, BaseException):
                fields["error_type"] = type(cause).__name__
            if run is not None:
                run.outcome_logged = True
                fields["duration_ms"] = run.duration_ms()
                run.decide(failed=True)
            _logger.warning("task retry", **fields)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the task
            _failsafe.report("celery task retry", exc)

    def _task_postrun(self, task_id: str | None = None, state: str | None = None, **kwargs: Any) -> None:
        with self._lock:
            run = self._runs.pop(task_id or "", None)
        if run is None:
            return
        try:
            run.decide(failed=state not in (_SUCCESS, None))
            if not run.outcome_logged:
                level = "info" if state in (_SUCCESS, None) else "warning"
                getattr(_logger, level)("task finished", state=state or _SUCCESS, duration_ms=run.duration_ms())
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the task
            _failsafe.report("celery task finish", exc)
        finally:
            run.close()

    def _summary(self, args: Any, kwargs: Any) -> str:
        from otel_logkit import setup
        from otel_logkit.redact import Redactor

        params = {"args": list(args or ()), "kwargs": dict(kwargs or {})}
        # The process's one redactor (configure()'s), however the instrumentor was applied.
        redactor = self._redactor or setup.current_redactor() or Redactor()
        return str(redactor.summarize_params(params))

    # -- pool processes -----------------------------------------------------------------------
    def _process_init(self, **kwargs: Any) -> None:
        """A prefork pool child, once: forget the parent's runs (threads pool) before taking tasks.

        The inherited configuration is the child's own from here: the export queue and the span
        processor restart their worker threads at fork. Celery resets the child's SIGTERM to the
        default action, and it stays so (a terminated child dies at once, as without otel-logkit);
        a child leaving normally flushes in ``worker_process_shutdown``.
        """
        pid = os.getpid()
        if pid == self._child_pid:
            return
        self._child_pid = pid
        with self._lock:
            self._runs.clear()


def _request_id_of(request: Any) -> str | None:
    value = getattr(request, REQUEST_ID_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, Mapping):
            value = headers.get(REQUEST_ID_HEADER)
    if isinstance(value, str) and value:
        # The same rule as an incoming HTTP header: a hostile message's id is dropped, not trusted.
        return sane_request_id([value.encode("utf-8", "replace")])
    # An eager run (task.apply, task_always_eager) runs inside the caller's request.
    return context.request_id.get()


def _keep_logging(**kwargs: Any) -> None:
    """``setup_logging`` receiver: its presence alone stops Celery from configuring logging."""


def _capture_warnings(**kwargs: Any) -> None:
    """``celeryd_init`` receiver: the worker's warnings (e.g. running as root) become log lines
    from the start, as Celery itself arranges once it has configured logging."""
    logging.captureWarnings(True)


def _add_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    try:
        request_id = context.request_id.get()
        if request_id and isinstance(headers, dict):
            headers.setdefault(REQUEST_ID_HEADER, request_id)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the caller
        _failsafe.report("celery publish", exc)


def _process_shutdown(**kwargs: Any) -> None:
    """A pool child exits through ``os._exit`` (no atexit): flush its records first."""
    from otel_logkit import setup

    setup.shutdown()


# -- the start-up banner ------------------------------------------------------------------------
def _banner(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> None:
    try:
        app = instance.app
        queues = sorted(getattr(app.amqp.queues, "consume_from", None) or app.amqp.queues)
        _logger.info(
            "celery worker starting",
            hostname=instance.hostname,
            app=app.main or "",
            concurrency=instance.concurrency,
            pool=getattr(instance.pool_cls, "__module__", str(instance.pool_cls)),
            queues=queues,
            tasks=sorted(name for name in app.tasks if not name.startswith("celery.")),
        )
    except Exception as exc:  # noqa: BLE001 - telemetry must not stop the worker
        _failsafe.report("celery banner", exc)


def _say(msg: str, f: Any = None) -> None:
    """Celery's ``safe_say`` (plain text from its signal handlers) as a JSON line.

    It runs inside a signal handler, which may have interrupted a write holding the line
    writer's lock: the line is written from a short-lived thread, waited for briefly.
    """
    text = str(msg).strip()
    writer = threading.Thread(
        target=logging.getLogger("celery.apps.worker").warning, args=(text,), name="celery-say", daemon=True
    )
    writer.start()
    writer.join(1.0)


def _patch_banner(module: Any) -> None:
    worker = module.Worker
    if not isinstance(worker.__dict__.get("emit_banner"), wrapt.FunctionWrapper):
        wrapt.wrap_function_wrapper(module, "Worker.emit_banner", _banner)
    if getattr(module, "safe_say", None) is not _say:
        _ORIGINALS["safe_say"] = module.safe_say
        module.safe_say = _say


def _unpatch_banner() -> None:
    import sys

    module: Any = sys.modules.get("celery.apps.worker")
    if module is None:
        return
    current = module.Worker.__dict__.get("emit_banner")
    if isinstance(current, wrapt.FunctionWrapper):
        module.Worker.emit_banner = current.__wrapped__
    original = _ORIGINALS.pop("safe_say", None)
    if original is not None:
        module.safe_say = original
