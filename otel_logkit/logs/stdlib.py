"""The console: one writer for every line, structlog's and stdlib logging's alike.

structlog loggers write through :class:`LineLogger`; stdlib records (uvicorn, libraries, the
app's ``logging`` calls) go through :class:`LogkitHandler`, whose ``ProcessorFormatter`` runs the
same processors. When the app (or uvicorn, or ``--log-config``) reconfigures stdlib logging later,
otel-logkit takes the console back: stream handlers writing to stdout/stderr are replaced by its
own handler, other handlers (files, syslog, ...) are left alone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import logging.config
import sys
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

if TYPE_CHECKING:
    from otel_logkit.redact import Redactor

_EXPORT_THREADS = ("otel-logkit", "OtelBatch")
_SILENCED: set[str] = set()
_CONSOLE_FILTERS: list[logging.Filter] = []
_PATCHED: dict[str, Callable[..., Any]] = {}
_HANDLER: LogkitHandler | None = None
_ROOT_LEVEL: dict[str, int] = {}  # "set": the level otel-logkit gave root, "before": the app's


class LineWriter:
    """Writes whole lines to a stream under one lock; a closed or broken stream is ignored."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        """Write ``line`` and a newline, then flush."""
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed (broken pipe, shutdown): logging must not take the app down


class LineLogger:
    """The structlog "wrapped logger": receives the rendered line and writes it."""

    __slots__ = ("_writer", "name")

    def __init__(self, writer: LineWriter, name: str) -> None:
        self._writer = writer
        self.name = name

    def msg(self, message: str) -> None:
        """Write one rendered line (``""``: a line the request buffer holds, nothing to write)."""
        if message:
            self._writer.write(message)

    log = debug = info = warn = warning = error = exception = critical = fatal = msg


def _caller_module() -> str:
    """Name of the first module on the stack outside structlog and otel-logkit's own plumbing."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("structlog", "otel_logkit.logs", "otel_logkit.setup")):
            return str(name) or "root"
        frame = frame.f_back  # type: ignore[assignment]
    return "root"


class LineLoggerFactory:
    """structlog logger factory: ``structlog.get_logger("name")`` or the calling module's name."""

    def __init__(self, writer: LineWriter) -> None:
        self.writer = writer

    def __call__(self, *args: Any) -> LineLogger:
        """Create the logger for one ``get_logger`` call site."""
        name = args[0] if args and isinstance(args[0], str) else _caller_module()
        return LineLogger(self.writer, name)


def mark_internal(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Keep the SDK's own log lines (``opentelemetry.*``) on stdout but out of the export."""
    record = event_dict.get("_record")
    if record is not None and record.name.startswith("opentelemetry"):
        event_dict["_logkit_no_export"] = True
    return event_dict


class LogkitHandler(logging.Handler):
    """Formats stdlib records with otel-logkit's processors and writes them as lines.

    Args:
        writer: the shared line writer (stdout).
        pre_chain: processors for records that did not come from structlog.
        processors: the final processors, ending with the renderer.
        level: the minimum level.
    """

    def __init__(
        self,
        writer: LineWriter,
        pre_chain: list[Processor],
        processors: list[Processor],
        level: int,
        redactor: Redactor | None = None,
    ) -> None:
        super().__init__(level)
        self.writer = writer
        self.redactor = redactor
        self._root_handlers_seen = 0
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=pre_chain,
                processors=processors,
                use_get_message=True,
            )
        )
        self._failed = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop, from otel-logkit's console only, what it replaces or what would loop.

        Silenced loggers (uvicorn's access logger: the access line replaces it) and records
        refused by a console filter (a server's duplicate of an error line otel-logkit already
        wrote) are dropped here, on this handler, never on the logger: the app's own handlers
        (files, mail, Sentry) still receive every record.
        """
        if (
            record.threadName
            and record.threadName.startswith(_EXPORT_THREADS)
            and not record.name.startswith("otel_logkit")
        ):
            return False  # the exporters' own HTTP plumbing (urllib3, grpc): noise, and a feedback loop
        if "set" in _ROOT_LEVEL:
            handlers = logging.root.handlers
            if len(handlers) != self._root_handlers_seen:
                # A handler the app added to root after us (it runs after us, so it is guarded
                # before it sees this record).
                self._root_handlers_seen = len(handlers)
                guard_root_handlers(self)
        name = record.name
        if _SILENCED and (name in _SILENCED or name.rpartition(".")[0] in _SILENCED):
            return False
        for console_filter in _CONSOLE_FILTERS:
            if not console_filter.filter(record):
                return False
        return super().filter(record) is not False

    def emit(self, record: logging.LogRecord) -> None:
        """Format and write one record; a formatting failure is reported once, not raised."""
        try:
            line = self.format(record)
        except RecursionError:
            raise
        except Exception as exc:  # noqa: BLE001 - logging must never break the caller
            line = self._fallback(record, exc)
        if line:  # "": held by the request buffer
            self.writer.write(line)

    def _fallback(self, record: logging.LogRecord, error: Exception) -> str:
        """The line for a record that could not be formatted (bad %-args, a raising ``__str__``)."""
        from otel_logkit import _failsafe
        from otel_logkit.logs.chain import fallback_event

        with contextlib.suppress(Exception):
            _failsafe.report("log record formatting", error)
        try:
            message: Any = record.msg if isinstance(record.msg, str) else repr(record.msg)
        except Exception:  # noqa: BLE001
            message = "<unrepresentable message>"
        event = {"message": message, "logger": record.name, "args": repr(record.args)[:4096]}
        try:
            return json.dumps(fallback_event(event, record.levelname.lower(), error, self.redactor), ensure_ascii=True)
        except Exception:  # noqa: BLE001 - the last resort names only the logger
            return json.dumps({"level": record.levelname, "logger": record.name, "message": "[line withheld]"})

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        """Report the first failure on stderr; stay silent afterwards."""
        if self._failed:
            return
        self._failed = True
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"otel-logkit: could not format a log record from {record.name!r}\n")


def silence_logger(name: str) -> None:
    """Keep logger ``name`` off otel-logkit's console (its other handlers still get its records)."""
    _SILENCED.add(name)


def add_console_filter(console_filter: logging.Filter) -> None:
    """Apply ``console_filter`` to otel-logkit's console only (once per filter class)."""
    if not any(type(existing) is type(console_filter) for existing in _CONSOLE_FILTERS):
        _CONSOLE_FILTERS.append(console_filter)


class _BelowAppRootLevel(logging.Filter):
    """On the app's own root handlers: what root let through before otel-logkit lowered its level."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record if root's level is the app's again, or the record reached the app's old level."""
        lowered = _ROOT_LEVEL.get("set")
        if lowered is None or logging.getLogger().level != lowered:
            return True
        return record.levelno >= _ROOT_LEVEL["before"]


_APP_ROOT_FILTER = _BelowAppRootLevel()


def guard_root_handlers(handler: logging.Handler) -> None:
    """Give the app's own root handlers the filter that keeps them at the app's former root level."""
    if "set" not in _ROOT_LEVEL:
        return
    for existing in logging.root.handlers:
        if existing is not handler and _APP_ROOT_FILTER not in existing.filters:
            existing.addFilter(_APP_ROOT_FILTER)


def _is_console(handler: logging.Handler) -> bool:
    if isinstance(handler, LogkitHandler) or not isinstance(handler, logging.StreamHandler):
        return False
    if isinstance(handler, logging.FileHandler):
        return False
    stream = getattr(handler, "stream", None)
    return stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


def reclaim_console() -> None:
    """Replace console handlers on every logger with otel-logkit's handler (see module doc)."""
    handler = _HANDLER
    if handler is None:
        return
    root = logging.getLogger()
    for existing in list(root.handlers):
        if _is_console(existing):
            root.removeHandler(existing)
    if handler not in root.handlers:
        root.addHandler(handler)
    guard_root_handlers(handler)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue
        removed = False
        for existing in list(logger.handlers):
            if _is_console(existing):
                logger.removeHandler(existing)
                removed = True
        if removed and not logger.propagate and handler not in logger.handlers:
            logger.addHandler(handler)


def _after(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        reclaim_console()
        return result

    wrapper.__logkit_original__ = original  # type: ignore[attr-defined]
    return wrapper


def install(handler: LogkitHandler, level: int) -> None:
    """Put ``handler`` on the root logger and keep it there across later logging configuration."""
    global _HANDLER  # noqa: PLW0603 - one console per process
    _HANDLER = handler
    root = logging.getLogger()
    if root.level == logging.WARNING and level < logging.WARNING:
        # Root at its default: lower it so LOGKIT_LOG_LEVEL governs the console, and keep the
        # app's own root handlers at what root let through before. A level the app set is its own.
        _ROOT_LEVEL.update(set=level, before=root.level)
        root.setLevel(level)
    if not _PATCHED:
        for module, name in (
            (logging.config, "dictConfig"),
            (logging.config, "fileConfig"),
            (logging, "basicConfig"),
        ):
            original = getattr(module, name)
            _PATCHED[name] = original
            setattr(module, name, _after(original))
    # The exporters' own error lines become a stream with the collector down; ExportHealth
    # reports the outage once instead.
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    # The SDK's and the runner's DEBUG lines ("Instrumented requests", ...) are not the app's.
    logging.getLogger("opentelemetry").setLevel(max(level, logging.INFO))
    reclaim_console()


def uninstall() -> None:
    """Remove the handler and the patches (tests)."""
    global _HANDLER
    handler, _HANDLER = _HANDLER, None
    for name, original in _PATCHED.items():
        setattr(logging.config if name != "basicConfig" else logging, name, original)
    _PATCHED.clear()
    _SILENCED.clear()
    _CONSOLE_FILTERS.clear()
    lowered = _ROOT_LEVEL.pop("set", None)
    before = _ROOT_LEVEL.pop("before", None)
    root = logging.getLogger()
    if lowered is not None and before is not None and root.level == lowered:
        root.setLevel(before)
    for existing in root.handlers:
        existing.removeFilter(_APP_ROOT_FILTER)
    logging.getLogger("opentelemetry.exporter").setLevel(logging.NOTSET)
    logging.getLogger("opentelemetry").setLevel(logging.NOTSET)
    if handler is None:
        return
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger) and handler in logger.handlers:
            logger.removeHandler(handler)
