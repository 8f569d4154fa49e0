"""The processor chain: what every line goes through, for structlog and stdlib logging alike.

Order: context (contextvars, logger, level, trace ids, service/env, timestamp, exception,
message) -> redaction -> OTLP export hand-off -> private keys dropped -> rendering.
"""

from __future__ import annotations

from typing import IO, Any

import structlog
from structlog.typing import Processor

from otel_logkit.config import Settings
from otel_logkit.logs import processors as p
from otel_logkit.logs import stdlib
from otel_logkit.logs.otlp import LogExportQueue
from otel_logkit.redact import RedactingProcessor, Redactor

_ORIGINAL_STRUCTLOG_CONFIGURE = structlog.configure


def configure_logging(
    settings: Settings,
    writer: stdlib.LineWriter,
    redactor: Redactor | None,
    log_queue: LogExportQueue | None,
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
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        p.add_logger_name,
        p.add_log_level,
        p.add_trace_context,
        p.ServiceFields(settings.service, settings.env),
        p.TimeStamper(),
        p.add_exception_fields,
        p.rename_event_to_message,
    ]
    final: list[Processor] = []
    if redactor is not None:
        final.append(RedactingProcessor(redactor))
    if log_queue is not None:
        final.append(log_queue)
    final.append(p.drop_private_keys)
    if settings.log_format == "console":
        final.append(
            structlog.dev.ConsoleRenderer(colors=_isatty(writer.stream), event_key="message", timestamp_key="timestamp")
        )
    else:
        final.append(p.render_json)
    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(settings.log_level),
        logger_factory=stdlib.LineLoggerFactory(writer),
        cache_logger_on_first_use=cache_loggers,
    )
    # ExtraAdder keeps `logger.info(..., extra={...})` fields (and LoggerAdapter ones) as fields.
    pre_chain: list[Processor] = [stdlib.mark_internal, structlog.stdlib.ExtraAdder(), *shared]
    handler = stdlib.LogkitHandler(writer, pre_chain, final, settings.log_level)
    stdlib.install(handler, settings.log_level)
    ensured: list[Processor] = [p.add_trace_context, shared[4]]
    if log_queue is not None:
        ensured.append(log_queue)
    _guard_structlog_configure(ensured)


def _guard_structlog_configure(ensured: list[Processor]) -> None:
    """Keep trace ids, service/env and export when the app calls ``structlog.configure`` itself.

    The app's processors, renderer and logger factory are kept; the processors in ``ensured``
    that its list lacks are inserted just before its last processor (the renderer).
    """

    def configure(*args: Any, **kwargs: Any) -> None:
        if args:
            kwargs.setdefault("processors", args[0])
            args = ()
        processors = kwargs.get("processors")
        if processors is not None:
            chain = list(processors)
            missing = [processor for processor in ensured if processor not in chain]
            at = max(len(chain) - 1, 0)
            chain[at:at] = missing
            kwargs["processors"] = chain
        _ORIGINAL_STRUCTLOG_CONFIGURE(**kwargs)

    configure.__doc__ = _ORIGINAL_STRUCTLOG_CONFIGURE.__doc__
    structlog.configure = configure


def restore_structlog_configure() -> None:
    """Put the original ``structlog.configure`` back (tests)."""
    structlog.configure = _ORIGINAL_STRUCTLOG_CONFIGURE


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
