"""The processor chain: what every line goes through, for structlog and stdlib logging alike.

Order: context (contextvars, user fields set aside, logger, level, request id, trace ids,
service/env, timestamp, exception, message, user fields restored) -> redaction -> OTLP export
hand-off -> private keys dropped -> rendering. The whole chain runs contained (:class:`LogLine`):
a failure inside it still writes the line, redacted, with the error noted, and never reaches
the caller.

When the app configures structlog itself, its processors and renderer are kept and one
:class:`AppChainStage` goes in just before its renderer: trace ids, service/env, redaction and
the export, so that whatever the app renders or captures has been redacted, and each line is
exported exactly once.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import structlog
import structlog.testing
from structlog._config import configure as _config_configure
from structlog.typing import EventDict, Processor, WrappedLogger

from otel_logkit import _failsafe, context
from otel_logkit._event_keys import NS_KEY, PRIVATE_KEYS
from otel_logkit.config import Settings
from otel_logkit.logs import buffer, stdlib
from otel_logkit.logs import processors as p
from otel_logkit.logs.buffer import BufferPolicy
from otel_logkit.logs.errors import ErrorDeduplicator, Suppressed, add_error_fingerprint
from otel_logkit.logs.sink import LogSink
from otel_logkit.redact import RedactingProcessor, Redactor

_ORIGINAL_STRUCTLOG_CONFIGURE = structlog.configure
_ORIGINAL_FORMATTER_INIT = structlog.stdlib.ProcessorFormatter.__init__
_MAX_FALLBACK_FIELDS = 64
_MAX_FALLBACK_VALUE = 4096
_STDLIB_HAND_OFFS: tuple[Callable[..., Any], ...] = (
    structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    structlog.stdlib.render_to_log_kwargs,
    structlog.stdlib.render_to_log_args_and_kwargs,
)


class LogLine:
    """otel-logkit's processors for one line, run contained.

    Args:
        build: the processors that give the line its fields (context, ids, timestamp, ...).
        finish: the processors that redact, export and render it, ending with the renderer.
        redactor: redacts the fallback line written when a step fails.
        buffering: the request buffer's policy, when ``LOGKIT_REQUEST_BUFFER`` is on.
    """

    __slots__ = ("_buffering", "_build", "_finish", "_redactor")

    def __init__(
        self,
        build: Sequence[Processor],
        finish: Sequence[Processor],
        redactor: Redactor | None,
        buffering: BufferPolicy | None = None,
    ) -> None:
        self._build = tuple(build)
        self._finish = tuple(finish)
        self._redactor = redactor
        self._buffering = buffering

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        """Run every step; on an internal error, return the fallback line instead of raising.

        A line below the log level (request buffer on) is held by the request's buffer and
        yields ``""``: nothing to write now.
        """
        buffering = self._buffering
        if buffering is not None and _LEVEL_NUMBERS.get(method_name, logging.INFO) < buffering.below:
            try:
                held = context.log_buffer.get()
                if held is None:
                    return ""  # outside a request or job: filtered, as without the buffer
                # Held as it is, with what only this moment knows (time, contextvars, the
                # exception being handled); the line is built only if the request fails.
                event_dict[NS_KEY] = time.time_ns()
                event_dict[_CONTEXT_KEY] = contextvars.copy_context()
                if event_dict.get("exc_info") is True:
                    event_dict["exc_info"] = sys.exc_info()
                if held.hold(logger, method_name, event_dict):
                    return ""
                del event_dict[_CONTEXT_KEY]  # decided as failed already: written now
            except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                return self._fallback(event_dict, method_name, exc)
        return self._run(logger, method_name, event_dict, None)

    def finish_held(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        """Build, redact, export and render a line the request buffer held, in the context it was logged in."""
        return self._run(logger, method_name, event_dict, event_dict.pop(_CONTEXT_KEY, None))

    def _run(
        self, logger: WrappedLogger, method_name: str, event_dict: EventDict, logged_in: contextvars.Context | None
    ) -> Any:
        value: Any = event_dict
        try:
            value = (
                logged_in.run(self._built, logger, method_name, value)
                if logged_in is not None
                else (self._built(logger, method_name, value))
            )
            for step in self._finish:
                value = step(logger, method_name, value)
        except Suppressed:
            return ""  # a repeated error over its burst: counted, summarized at the window's end
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            return self._fallback(value, method_name, exc)
        return value

    def _built(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        value: Any = event_dict
        for step in self._build:
            value = step(logger, method_name, value)
        return value

    def _fallback(self, value: Any, method_name: str, exc: Exception) -> str:
        _failsafe.report("log line", exc)
        return json.dumps(fallback_event(value, method_name, exc, self._redactor), ensure_ascii=True)


_CONTEXT_KEY = "_logkit_context"  # the contextvars of a held line (fields, span), until it is built

_LEVEL_NUMBERS = {
    **logging.getLevelNamesMapping(),
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
"""structlog method names and stdlib level names -> level numbers (what the buffer compares)."""


class AppChainStage:
    """What otel-logkit adds to a processor chain the app configures itself, before its renderer.

    Args:
        redactor: redacts the event (``None``: no redaction).
        log_queue: exports the event (``None``: the line is exported elsewhere, or not at all).
        enrich: add request id, trace ids, service/env and turn ``exc_info`` into text.
        stringify: replace non-JSON values by their redacted text (off for ``capture_logs``).
    """

    __slots__ = ("_log_queue", "_redactor", "_steps", "_stringify")

    def __init__(
        self,
        settings: Settings,
        redactor: Redactor | None,
        log_queue: LogSink | None,
        *,
        enrich: bool = True,
        stringify: bool = True,
    ) -> None:
        steps: list[Processor] = []
        if enrich:
            steps += [
                p.add_request_id,
                p.add_trace_context,
                p.ServiceFields(settings.service, settings.env),
                p.add_exception_fields,
                _stamp_ns,
            ]
        self._steps = tuple(steps)
        self._redactor = redactor
        self._log_queue = log_queue
        self._stringify = stringify

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Enrich, redact and export ``event_dict``; on an internal error, return a safe fallback."""
        try:
            for step in self._steps:
                event_dict = step(logger, method_name, event_dict)  # type: ignore[assignment] # enrichers return dicts
            if self._redactor is not None:
                self._redactor.redact_event(event_dict, stringify=self._stringify)
            if self._log_queue is not None:
                self._log_queue(logger, method_name, event_dict)
            for key in PRIVATE_KEYS:  # bookkeeping between otel-logkit's steps, never the app's to render
                event_dict.pop(key, None)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("log line", exc)
            fallback = fallback_event(event_dict, method_name, exc, self._redactor)
            fallback["event"] = fallback.pop("message")
            return fallback
        return event_dict


def _stamp_ns(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault(NS_KEY, time.time_ns())
    return event_dict


def fallback_event(
    event_dict: Any, method_name: str, error: BaseException, redactor: Redactor | None
) -> dict[str, Any]:
    """The line written when otel-logkit's own processing fails: the raw event as text, redacted."""
    fields: dict[str, Any] = {}
    try:
        items = list(event_dict.items()) if isinstance(event_dict, dict) else [("event", event_dict)]
        for key, value in items[:_MAX_FALLBACK_FIELDS]:
            if key in PRIVATE_KEYS or key in ("_record", "_from_structlog", "exc_info"):
                continue
            text = value if isinstance(value, str) else p._text(value)
            name = key if isinstance(key, str) else p._text(key)
            fields[p.utf8_safe(name)] = p.utf8_safe(text[:_MAX_FALLBACK_VALUE])
    except Exception:  # noqa: BLE001 - a hostile event still gets a line
        fields = {}
    message = fields.pop("message", None) or fields.pop("event", "")
    level = p._LEVELS.get(method_name) or "INFO"
    line: dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() // 1_000_000 % 1000:03d}Z",
        "level": level,
        "message": message,
        **{key: value for key, value in fields.items() if key not in ("timestamp", "level")},
        "logkit_error": f"otel-logkit could not process this line ({type(error).__name__})",
    }
    if redactor is not None:
        try:
            redactor.redact_event(line)
        except Exception:  # noqa: BLE001 - never write what could not be redacted
            return {
                **{k: line[k] for k in ("timestamp", "level")},
                "message": "[line withheld]",
                "logkit_error": line["logkit_error"],
            }
    return line


def configure_logging(
    settings: Settings,
    writer: stdlib.LineWriter,
    redactor: Redactor | None,
    log_queue: LogSink | None,
    cache_loggers: bool = True,
) -> None:
    """Configure structlog and the stdlib bridge with one processor chain ending in ``writer``.

    Args:
        settings: level, format, service and env.
        writer: the console every line goes to.
        redactor: masks secrets before a line is rendered or queued for export.
        log_queue: the OTLP export hand-off, or ``None`` when logs are not exported.
        cache_loggers: let structlog loggers resolve their configuration once.
    """
    build: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        p.set_aside_contract_fields,
        p.add_logger_name,
        p.add_log_level,
        p.add_request_id,
        p.add_trace_context,
        p.ServiceFields(settings.service, settings.env),
        p.TimeStamper(),
        p.add_exception_fields,
        p.rename_event_to_message,
        p.restore_user_fields,
        add_error_fingerprint,
    ]
    finish: list[Processor] = []
    global _deduplicator  # noqa: PLW0603 - one per configuration, flushed at shutdown
    _deduplicator = None
    if settings.dedup_window is not None:
        _deduplicator = ErrorDeduplicator(settings.dedup_window, settings.dedup_burst, _report_suppressed)
        finish.append(_deduplicator)
    if redactor is not None:
        # The fields otel-logkit sets itself (user values under these names were set aside as
        # app_<field>): nothing of the app's in them, nothing to scan on every line.
        finish.append(RedactingProcessor(redactor, trusted=p.OWN_FIELDS))
    if log_queue is not None:
        finish.append(log_queue)
    finish.append(p.drop_private_keys)
    if settings.log_format == "console":
        finish.append(
            structlog.dev.ConsoleRenderer(colors=_isatty(writer.stream), event_key="message", timestamp_key="timestamp")
        )
    else:
        finish.append(p.render_json)
    buffering = None
    level = settings.log_level
    if settings.request_buffer is not None and settings.request_buffer < settings.log_level:
        level = settings.request_buffer
        buffering = BufferPolicy(
            settings.log_level, settings.request_buffer, settings.request_buffer_max, settings.slow_request_ms
        )
    line = LogLine(build, finish, redactor, buffering)
    if buffering is not None:
        buffering.finish, buffering.write = line.finish_held, writer.write
    buffer.set_policy(buffering)
    _ORIGINAL_STRUCTLOG_CONFIGURE(
        processors=[line],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=stdlib.LineLoggerFactory(writer),
        cache_logger_on_first_use=cache_loggers,
    )
    # ExtraAdder keeps `logger.info(..., extra={...})` fields (and LoggerAdapter ones) as fields.
    pre_chain: list[Processor] = [stdlib.mark_internal, structlog.stdlib.ExtraAdder()]
    handler = stdlib.LogkitHandler(writer, pre_chain, [line], level, redactor)
    stdlib.install(handler, level)
    _guard_app_configuration(settings, redactor, log_queue)


def _guard_app_configuration(settings: Settings, redactor: Redactor | None, log_queue: LogSink | None) -> None:
    """Keep trace ids, service/env, redaction and export in chains the app configures itself.

    ``structlog.configure`` (also as called by ``configure_once`` and ``capture_logs``): the
    app's processors, renderer and logger factory are kept and an :class:`AppChainStage` is
    inserted just before its last processor. ``ProcessorFormatter`` instances the app builds for
    its own handlers (files, syslog) get a redaction step before their renderer.
    """

    def configure(*args: Any, **kwargs: Any) -> None:
        if args:
            kwargs.setdefault("processors", args[0])
            args = ()
        processors = kwargs.get("processors")
        if processors is not None:
            kwargs["processors"] = _with_stage(processors, kwargs.get("logger_factory"), settings, redactor, log_queue)
        _ORIGINAL_STRUCTLOG_CONFIGURE(**kwargs)

    configure.__doc__ = _ORIGINAL_STRUCTLOG_CONFIGURE.__doc__
    configure.__wrapped__ = _ORIGINAL_STRUCTLOG_CONFIGURE  # type: ignore[attr-defined]
    structlog.configure = configure
    structlog._config.configure = configure  # configure_once
    structlog.testing.configure = configure  # type: ignore[attr-defined] # capture_logs

    def formatter_init(self: structlog.stdlib.ProcessorFormatter, *args: Any, **kwargs: Any) -> None:
        _ORIGINAL_FORMATTER_INIT(self, *args, **kwargs)
        chain = list(self.processors)
        if redactor is None or _has_stage(chain) or len(chain) < 1:
            return
        chain.insert(len(chain) - 1, AppChainStage(settings, redactor, None, enrich=False))
        self.processors = chain

    structlog.stdlib.ProcessorFormatter.__init__ = formatter_init  # type: ignore[method-assign]


def _has_stage(chain: Sequence[Any]) -> bool:
    return any(isinstance(processor, LogLine | AppChainStage) for processor in chain)


def _with_stage(
    processors: Any,
    logger_factory: Any,
    settings: Settings,
    redactor: Redactor | None,
    log_queue: LogSink | None,
) -> Any:
    chain = list(processors)
    if not chain or _has_stage(chain):
        return processors
    last = chain[-1]
    if isinstance(last, structlog.testing.LogCapture):
        # The app's tests see the events they logged, redacted but otherwise as they were.
        stage = AppChainStage(settings, redactor, None, enrich=False, stringify=False)
    else:
        factory = logger_factory if logger_factory is not None else structlog.get_config()["logger_factory"]
        # Lines handed to stdlib logging are exported by otel-logkit's handler: once, not twice.
        to_stdlib = last in _STDLIB_HAND_OFFS or isinstance(factory, structlog.stdlib.LoggerFactory)
        stage = AppChainStage(settings, redactor, None if to_stdlib else log_queue)
    chain.insert(len(chain) - 1, stage)
    if isinstance(processors, list) and processors is structlog.get_config()["processors"]:
        # capture_logs keeps structlog's own list instance (bound loggers hold it): change it in place.
        processors[:] = chain
        return processors
    return chain


_deduplicator: ErrorDeduplicator | None = None


def _report_suppressed(fields: dict[str, Any]) -> None:
    structlog.get_logger("otel_logkit.errors").warning("repeated error suppressed", **fields)


def flush_repeated_errors() -> None:
    """Write the pending ``repeated error suppressed`` lines now (at shutdown)."""
    if _deduplicator is not None:
        _deduplicator.flush()


def restore_structlog_configure() -> None:
    """Put the original ``structlog.configure`` and ``ProcessorFormatter`` back (tests)."""
    buffer.set_policy(None)
    structlog.configure = _ORIGINAL_STRUCTLOG_CONFIGURE
    structlog._config.configure = _config_configure
    structlog.testing.configure = _config_configure  # type: ignore[attr-defined]
    structlog.stdlib.ProcessorFormatter.__init__ = _ORIGINAL_FORMATTER_INIT  # type: ignore[method-assign]


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
