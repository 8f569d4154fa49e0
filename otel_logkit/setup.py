"""The one place that wires providers, the logging chain, instrumentors and shutdown (idempotent)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

import structlog
import wrapt
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter

from otel_logkit import sql, web
from otel_logkit.config import Settings
from otel_logkit.gateways.hooks import install_failure_observers, instrument_kwargs, uninstall_failure_observers
from otel_logkit.handoff import HelperChannel, SpanHandoff
from otel_logkit.logs import chain, stdlib
from otel_logkit.logs.health import ExportHealth, ReportingSpanExporter, report_line
from otel_logkit.logs.sink import LogSink
from otel_logkit.redact import RedactingSpanExporter, Redactor, registered_detectors

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter
from otel_logkit.web import native as native_fastapi

# (entry-point name, library module, instrumentation module, instrumentor class)
_INSTRUMENTATIONS = (
    ("fastapi", "fastapi", "opentelemetry.instrumentation.fastapi", "FastAPIInstrumentor"),
    ("requests", "requests", "opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
    ("httpx", "httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    # contrib's instrumentor plus request_id in its sqlcommenter comment (otel_logkit.sql).
    ("sqlalchemy", "sqlalchemy", "otel_logkit.sql", "SQLAlchemyInstrumentor"),
    # otel-logkit's own: logging, task context and outcome lines, then the contrib instrumentation.
    ("celery", "celery", "otel_logkit.celery", "CeleryInstrumentor"),
)
HANDLED_INSTRUMENTATIONS = frozenset({*(name for name, *_ in _INSTRUMENTATIONS), "flask"})
"""Entry points that :func:`configure` instruments itself (with otel-logkit's options and hooks).

Flask is traced by :mod:`otel_logkit.web.flask` (with the WSGI instrumentation's functions), never by the
contrib ``FlaskInstrumentor``, which replaces ``flask.Flask`` and keeps every app alive.
"""


@dataclass
class _Runtime:
    settings: Settings
    writer: stdlib.LineWriter
    tracer_provider: TracerProvider | None = None
    span_exporter: ReportingSpanExporter | None = None
    redactor: Redactor | None = None
    log_queue: LogSink | None = None
    channel: HelperChannel | None = None
    spans_in_process: bool = False
    instrumentors: list[Any] = field(default_factory=list)
    previous_sigterm: Any = None
    shut_down: bool = False
    terminating: int = 0
    terminator: threading.Thread | None = None


_runtime: _Runtime | None = None
_lock = threading.RLock()


def configure(
    settings: Settings | None = None,
    *,
    stream: IO[str] | None = None,
    span_exporter: SpanExporter | None = None,
    log_exporter: LogRecordExporter | None = None,
    instrument: bool = True,
    cache_loggers: bool = True,
    **overrides: Any,
) -> Settings:
    """Wire everything once per process; later calls return the settings in force.

    Args:
        settings: explicit settings; by default read from the environment.
        stream: where JSON lines go (default: ``sys.stdout``).
        span_exporter: export spans here (synchronously) instead of the OTLP exporter.
        log_exporter: export log records here instead of the OTLP exporter.
        instrument: instrument FastAPI, requests, httpx and Flask.
        cache_loggers: let structlog loggers resolve their configuration once (off in tests that
            configure repeatedly, so module-level loggers follow each new configuration).
        overrides: ``Settings`` fields that win over the environment, e.g. ``env="prod"``.

    Raises:
        ConfigError: an environment variable holds a value that is not accepted.
    """
    global _runtime  # noqa: PLW0603 - the process-wide configuration
    with _lock:
        if _runtime is not None:
            return _runtime.settings
        if settings is None:
            settings = Settings.from_env(**overrides)
        elif overrides:
            settings = Settings.from_env({}, **{**settings.fields(), **overrides})
        runtime = _Runtime(settings=settings, writer=stdlib.LineWriter(stream or sys.stdout))
        # One redactor (its patterns compiled once) for every boundary where data leaves.
        runtime.redactor = redactor = Redactor.from_settings(settings)
        resource = Resource.create(
            {
                **settings.resource_attributes,
                "service.name": settings.service,
                "deployment.environment.name": settings.env,
            }
        )
        health = ExportHealth(settings.otlp_endpoint, _report)
        if not settings.sdk_disabled:
            _export_paths(runtime, resource, log_exporter, span_exporter, health)
        chain.configure_logging(settings, runtime.writer, runtime.redactor, runtime.log_queue, cache_loggers)
        if not settings.sdk_disabled:
            runtime.tracer_provider, runtime.span_exporter = _tracer_provider(
                runtime, resource, span_exporter, health, redactor
            )
            trace.set_tracer_provider(runtime.tracer_provider)
        _runtime = runtime
        if instrument:
            # FastAPI releases that trace requests themselves get their own server span, not the
            # contrib middleware's (much cheaper per request; see otel_logkit.web.native).
            native = runtime.tracer_provider is not None and native_fastapi.available()
            disabled = set(settings.disabled_instrumentations)
            if settings.gateways:  # without gateway hosts there is no failure to observe: patch nothing
                install_failure_observers()
            runtime.instrumentors = _instrument(runtime, redactor, disabled | {"fastapi"} if native else disabled)
            fastapi_defaults = native_fastapi.telemetry_defaults(settings, tracing=not disabled & {"fastapi", "*"})
            flask_traced = runtime.tracer_provider is not None and not disabled & {"flask", "*"}
            web.install(
                settings,
                redactor,
                fastapi_defaults if native else None,
                flask_tracer_provider=runtime.tracer_provider if flask_traced else None,
            )
        _install_shutdown(runtime)
        return settings


_report = report_line


def _helper_possible() -> bool:
    """Whether this process can start the export helper: a Python interpreter of its own
    (not an embedding server such as uWSGI, nor a frozen application)."""
    executable = sys.executable
    return bool(executable) and not getattr(sys, "frozen", False) and "python" in os.path.basename(executable).lower()


def _export_paths(
    runtime: _Runtime,
    resource: Resource,
    log_exporter: LogRecordExporter | None,
    span_exporter: SpanExporter | None,
    health: ExportHealth,
) -> None:
    """Choose, per signal, the export helper (OTLP exporters that can move) or the app process
    (exporters passed in, ``console``, ``LOGKIT_EXPORT_PROCESS=false``)."""
    settings = runtime.settings
    movable = settings.export_process and _helper_possible()
    logs_moved = movable and log_exporter is None and settings.logs_exporter == "otlp"
    spans_moved = movable and span_exporter is None and settings.traces_exporter == "otlp"
    if logs_moved or spans_moved:
        # Detectors the app registered are its own code: the helper, which never imports the
        # app, cannot run them, so spans are also redacted here when there are any.
        redactor = runtime.redactor
        redact_span = None
        if redactor is not None and registered_detectors():
            redact_span = RedactingSpanExporter(SpanExporter(), redactor).redact_span  # its redaction only
        runtime.channel = HelperChannel(
            settings, resource, _report, logs=logs_moved, spans=spans_moved, redact_span=redact_span
        )
    if logs_moved:
        runtime.log_queue = runtime.channel
    elif log_exporter is not None or settings.logs_exporter == "otlp":
        # "console" is the JSON on stdout itself; "none" is stdout only.
        from otel_logkit import exporters

        runtime.log_queue = exporters.log_export_queue(settings, resource, log_exporter, health, _report)


def _tracer_provider(
    runtime: _Runtime,
    resource: Resource,
    exporter: SpanExporter | None,
    health: ExportHealth,
    redactor: Redactor,
) -> tuple[TracerProvider, ReportingSpanExporter | None]:
    settings = runtime.settings
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    reporting = None
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exporter, redactor)))
        runtime.spans_in_process = True
    elif settings.traces_exporter == "otlp" and runtime.channel is not None and runtime.channel.carries_spans:
        provider.add_span_processor(SpanHandoff(runtime.channel))
    elif settings.traces_exporter == "otlp":
        from otel_logkit import exporters

        processor, reporting = exporters.otlp_span_pipeline(settings, health, redactor)
        provider.add_span_processor(processor)
        runtime.spans_in_process = True
    elif settings.traces_exporter == "console":
        # stdout carries one JSON log object per line; spans printed for humans go to stderr.
        console = ConsoleSpanExporter(out=sys.stderr)
        provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(console, redactor)))
        runtime.spans_in_process = True
    return provider, reporting


def _instrument(runtime: _Runtime, redactor: Redactor, disabled: set[str]) -> list[Any]:
    tracer_provider = runtime.tracer_provider
    done: list[Any] = []
    if tracer_provider is None or "*" in disabled:
        return done
    hook_kwargs = instrument_kwargs(runtime.settings, redactor)
    for name, library, module_name, class_name in _INSTRUMENTATIONS:
        if name in disabled or importlib.util.find_spec(library) is None:
            continue
        kwargs: dict[str, Any] = {"tracer_provider": tracer_provider, **hook_kwargs.get(name, {})}
        if name == "fastapi":
            # The per-message "http send"/"http receive" spans double the span work per request
            # and say nothing the server span does not.
            kwargs["exclude_spans"] = ["receive", "send"]
        if name == "sqlalchemy":
            kwargs.update(sql.instrument_kwargs(runtime.settings))
        if name == "celery":
            kwargs["redactor"] = redactor
        if name in _ON_IMPORT and library not in sys.modules:
            # Instrumenting imports the framework: wait until the app does. Importing FastAPI at
            # start-up imports anyio before pytest can rewrite its plugin, a warning that strict
            # test suites turn into an error (FastAPI's own suite, on the contrib path).
            wrapt.register_post_import_hook(
                functools.partial(_instrument_later, runtime, module_name, class_name, kwargs), library
            )
            continue
        instrumentor = _apply(module_name, class_name, kwargs)
        if instrumentor is not None:
            done.append(instrumentor)
    return done


_ON_IMPORT = frozenset({"fastapi", "sqlalchemy", "celery", "requests"})
"""Instrumentations applied when the app imports the library, not at start-up (importing the
framework at start-up costs time — requests alone ~70 ms, for apps that never use it — and
FastAPI's import of anyio before pytest's breaks strict suites). Not httpx: the runners load the
``httpx2`` entry point of the same instrumentation package, whose import imports httpx half-way."""


def _apply(module_name: str, class_name: str, kwargs: dict[str, Any]) -> Any:
    try:
        module = importlib.import_module(module_name)
        instrumentor = getattr(module, class_name)()
    except ImportError:
        return None  # the optional instrumentation package is not installed
    if instrumentor.is_instrumented_by_opentelemetry:
        return None
    instrumentor.instrument(**kwargs)
    return instrumentor


def _instrument_later(runtime: _Runtime, module_name: str, class_name: str, kwargs: dict[str, Any], _: Any) -> None:
    with _lock:
        if _runtime is not runtime or runtime.shut_down:
            return  # configured again (tests) or shut down since the hook was registered
        try:
            instrumentor = _apply(module_name, class_name, kwargs)
        except Exception as exc:  # noqa: BLE001 - instrumentation must not break the app's import
            _report("warning", "instrumentation failed", {"instrumentation": module_name, "error": repr(exc)})
            return
        if instrumentor is not None:
            runtime.instrumentors.append(instrumentor)


# -- flush and shutdown -------------------------------------------------------------------------
def force_flush(timeout: float = 5.0) -> bool:
    """Export every log line and span recorded so far; bounded by ``timeout`` seconds.

    For scripts, serverless handlers and tests that must know their telemetry left before they
    go on. Export continues afterwards (see :func:`shutdown` to stop it).

    Returns:
        ``True`` when everything was exported (or there is nothing to export) in time.
    """
    runtime = _runtime
    if runtime is None or runtime.shut_down:
        return True
    deadline = time.monotonic() + timeout
    done = True
    if runtime.tracer_provider is not None and runtime.spans_in_process:
        done = runtime.tracer_provider.force_flush(int(timeout * 1000)) and done
    for sink in {id(s): s for s in (runtime.channel, runtime.log_queue) if s is not None}.values():
        done = sink.force_flush(max(0.0, deadline - time.monotonic())) and done
    return done


def shutdown(timeout: float | None = None) -> None:
    """Flush pending logs and spans, then stop exporting; bounded by ``timeout`` seconds.

    Args:
        timeout: seconds to spend at most (default ``LOGKIT_SHUTDOWN_TIMEOUT``).
    """
    runtime = _runtime
    if runtime is None or runtime.shut_down:
        return
    runtime.shut_down = True
    timeout = runtime.settings.shutdown_timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout

    def work() -> None:
        chain.flush_repeated_errors()
        if runtime.channel is not None:
            # The helper sends what it holds and exits at the end of its pipe.
            runtime.channel.shutdown(max(0.0, deadline - time.monotonic()))
        spans_failing = runtime.span_exporter is not None and runtime.span_exporter.failing
        if runtime.tracer_provider is not None and runtime.spans_in_process and not spans_failing:
            runtime.tracer_provider.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000))
        if runtime.log_queue is not None and runtime.log_queue is not runtime.channel:
            runtime.log_queue.shutdown(max(0.0, deadline - time.monotonic()))  # type: ignore[attr-defined]
        if runtime.span_exporter is not None and spans_failing:
            # Interrupt the exporter's retries first: the collector is known to be down.
            runtime.span_exporter.shutdown()
        if runtime.tracer_provider is not None:
            runtime.tracer_provider.shutdown()

    # Exporters may block on a dead or slow collector: never let that hold the process longer.
    worker = threading.Thread(target=work, name="otel-logkit-shutdown", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    runtime = _runtime
    previous = runtime.previous_sigterm if runtime is not None else signal.SIG_DFL
    if callable(previous):
        # The app's own handler first, as without otel-logkit: it may drain requests and log
        # while doing so; the flush comes at exit, after that drain.
        previous(signum, frame)
        return
    if runtime is None or runtime.terminating:
        # Our flush is done (or there is none): die by the signal, as the app would have.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    runtime.terminating = signum
    # Never flush inside the handler: the interrupted code may hold a lock the flush needs (the
    # console's, a handler's). A thread flushes while the main thread runs on, then the signal
    # is sent again and the handler above lets the default action end the process.
    runtime.terminator = threading.Thread(target=_terminate, args=(signum,), name="otel-logkit-sigterm", daemon=True)
    runtime.terminator.start()


def _terminate(signum: int) -> None:
    shutdown()
    os.kill(os.getpid(), signum)
    # The main thread runs the handler at its next bytecode; one stuck in C code for good
    # would keep the process alive: exit with the shell's code for that signal instead.
    time.sleep(2.0)
    os._exit(128 + signum)


def _at_exit() -> None:
    runtime = _runtime
    if runtime is not None and runtime.terminator is not None:
        # The process is exiting while the SIGTERM flush runs (a server that re-raised the
        # signal after its own drain, then returned): let it finish, then die by the signal.
        runtime.terminator.join(runtime.settings.shutdown_timeout + 1.0)
        signal.signal(runtime.terminating, signal.SIG_DFL)
        os.kill(os.getpid(), runtime.terminating)
    shutdown()


def _install_shutdown(runtime: _Runtime) -> None:
    atexit.register(_at_exit)
    if threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(ValueError, OSError):
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_IGN:
            return
        runtime.previous_sigterm = previous
        signal.signal(signal.SIGTERM, _on_sigterm)


def reset() -> None:
    """Undo :func:`configure` (for tests): flush, unpatch, uninstrument, forget the providers."""
    global _runtime  # noqa: PLW0603
    with _lock:
        runtime = _runtime
        if runtime is None:
            return
        shutdown(timeout=2.0)
        atexit.unregister(_at_exit)
        for instrumentor in runtime.instrumentors:
            with contextlib.suppress(Exception):
                instrumentor.uninstrument()
        if threading.current_thread() is threading.main_thread() and runtime.previous_sigterm is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, runtime.previous_sigterm)
        web.uninstall()
        uninstall_failure_observers()
        stdlib.uninstall()
        chain.restore_structlog_configure()
        structlog.reset_defaults()
        _reset_tracer_provider()
        _runtime = None


def _reset_tracer_provider() -> None:
    # The API allows setting the global provider once per process; tests configure many times.
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


def is_configured() -> bool:
    """Tell whether :func:`configure` has run in this process."""
    return _runtime is not None


def current_settings() -> Settings | None:
    """The settings in force, or ``None`` before :func:`configure`."""
    return _runtime.settings if _runtime is not None else None


def current_redactor() -> Redactor | None:
    """The process's one redactor, or ``None`` before :func:`configure`."""
    return _runtime.redactor if _runtime is not None else None


def log_queue() -> LogSink | None:
    """The OTLP log export hand-off in force: the in-process queue or the export helper's
    channel (counters for doctor and tests)."""
    return _runtime.log_queue if _runtime is not None else None


logging.getLogger(__name__).addHandler(logging.NullHandler())
