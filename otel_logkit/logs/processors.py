"""structlog processors that give every line the contract's shape.

Stateless processors are verb functions, configured ones are agent-noun classes (as in
structlog). All of them use ``setdefault`` so that fields set explicitly by the caller win.
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger

from otel_logkit import context
from otel_logkit._event_keys import EXC_KEY, NS_KEY, PRIVATE_KEYS, SET_ASIDE_KEY

# structlog method names (and stdlib level names, lower-cased) -> the contract's upper-case level.
_LEVELS: dict[str, str] = {
    "debug": "DEBUG",
    "info": "INFO",
    "msg": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
    "notset": "NOTSET",
}

_SET_ASIDE_KEY = SET_ASIDE_KEY

CONTRACT_FIELDS = ("timestamp", "level", "message", "logger", "service", "env", "trace_id", "span_id", "request_id")
"""Fields whose meaning the contract fixes: user data never overwrites them."""
OWN_FIELDS = frozenset({"timestamp", "level", "service", "env", "trace_id", "span_id"})
"""Contract fields only otel-logkit sets in its chain (``message``, ``logger``, ``request_id`` carry app data)."""
USER_FIELD_PREFIX = "app_"
"""A user value that clashes with a contract field is kept under this prefix (``app_level``)."""


def set_aside_contract_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Move user-supplied values of contract fields aside, before otel-logkit sets its own.

    ``log.info("search", **request.query_params)`` with ``?level=FORGED`` must not forge the
    line's level; :func:`restore_user_fields` puts such values back as ``app_level``. Lines an
    app's own structlog chain prepared (through ``wrap_for_formatter``) keep their fields.
    """
    if event_dict.get("_from_structlog"):
        return event_dict
    aside = None
    for key in CONTRACT_FIELDS:
        if key in event_dict:
            if aside is None:
                aside = {}
            aside[key] = event_dict.pop(key)
    if aside is not None:
        event_dict[_SET_ASIDE_KEY] = aside
    return event_dict


def restore_user_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Put set-aside user values back: as the field when otel-logkit has none, else as ``app_<field>``."""
    aside = event_dict.pop(_SET_ASIDE_KEY, None)
    if not aside:
        return event_dict
    for key, value in aside.items():
        ours = event_dict.get(key)
        if ours is None and key == "request_id":
            event_dict[key] = value  # a job's or task's own correlation id outside a request
        elif ours != value and not (key == "message" and value == event_dict.get("message")):
            event_dict.setdefault(USER_FIELD_PREFIX + key, value)
    return event_dict


def add_request_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``request_id`` of the request being served (one ContextVar, read at emit time)."""
    request_id = context.request_id.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def add_log_level(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``level`` as the upper-case level name (``INFO``, ``WARNING``, ...)."""
    event_dict.setdefault("level", _LEVELS.get(method_name) or method_name.upper())
    return event_dict


def add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``logger``: the stdlib record's logger name, or the structlog logger's name."""
    if "logger" not in event_dict:
        record = event_dict.get("_record")
        name = record.name if record is not None else getattr(logger, "name", None)
        event_dict["logger"] = name or "root"
    return event_dict


# The ids of the last span seen, formatted: the lines of one request share its span. One tuple,
# replaced whole, so threads never see a context paired with another span's ids.
_last_ids: tuple[object, str, str] = (None, "", "")


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``trace_id`` and ``span_id`` of the active span; add nothing outside a valid span."""
    global _last_ids  # noqa: PLW0603 - a one-entry cache
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        last = _last_ids
        if last[0] is not context:
            last = _last_ids = (context, f"{context.trace_id:032x}", f"{context.span_id:016x}")
        event_dict.setdefault("trace_id", last[1])
        event_dict.setdefault("span_id", last[2])
        if context.trace_flags.sampled:
            event_dict.setdefault("_logkit_sampled", True)
    return event_dict


def add_exception_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Turn ``exc_info`` into ``exception`` (traceback text) and ``error_type`` (class name).

    Any truthy ``exc_info`` is accepted, as structlog does: ``True`` (the exception being
    handled), an exception, or an ``(type, value, traceback)`` tuple; anything else that does
    not describe an exception is ignored rather than raised into the caller.
    """
    exc_info = figure_out_exc_info(event_dict.pop("exc_info", None), method_name)
    if exc_info is None:
        return event_dict
    event_dict.setdefault("error_type", exc_info[0].__name__)
    event_dict[EXC_KEY] = exc_info[1]
    try:
        text = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    except Exception as exc:  # noqa: BLE001 - a broken exception (raising __str__) is still logged
        text = f"{exc_info[0].__qualname__}: <traceback unavailable: {type(exc).__name__}>"
    event_dict.setdefault("exception", text)
    return event_dict


def figure_out_exc_info(value: Any, method_name: str = "") -> tuple[type[BaseException], BaseException, Any] | None:
    """A valid ``(type, value, traceback)`` from what the caller passed as ``exc_info``, or ``None``."""
    if not value:
        return None
    if value is True or (method_name == "exception" and not isinstance(value, tuple | BaseException)):
        value = sys.exc_info()
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], type)
        and issubclass(value[0], BaseException)
        and isinstance(value[1], BaseException)
    ):
        return (value[0], value[1], value[2])
    return None


rename_event_to_message = structlog.processors.EventRenamer("message")
"""Rename structlog's ``event`` key to the contract's ``message`` (structlog's own renamer)."""


_DROPPED = (*PRIVATE_KEYS, "_record", "_from_structlog", "color_message")


def drop_private_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Remove otel-logkit's private keys and structlog's stdlib bookkeeping before rendering."""
    # uvicorn passes a copy of each message with ANSI colour codes as extra={"color_message": ...}.
    for key in _DROPPED:
        event_dict.pop(key, None)
    return event_dict


class ServiceFields:
    """Add ``service`` and ``env`` to every event.

    Args:
        service: the service name (``OTEL_SERVICE_NAME``).
        env: the deployment environment (``LOGKIT_ENV``).
    """

    __slots__ = ("env", "service")

    def __init__(self, service: str, env: str) -> None:
        self.service = service
        self.env = env

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Add the two fields unless already present."""
        event_dict.setdefault("service", self.service)
        event_dict.setdefault("env", self.env)
        return event_dict


class TimeStamper:
    """Add ``timestamp``: ISO 8601, UTC, milliseconds, ``Z`` (e.g. ``2026-11-23T19:15:00.123Z``).

    The nanosecond time is kept under a private key so the OTLP record carries the same instant.
    The formatted second is cached as one ``(second, prefix)`` tuple, replaced whole: threads
    never pair one second with another's text.
    """

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Stamp the event with the current time."""
        ns = event_dict.get(NS_KEY) or time.time_ns()  # a held line keeps the moment it was logged
        second, rest = divmod(ns, 1_000_000_000)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        event_dict.setdefault("timestamp", f"{cached[1]}.{rest // 1_000_000:03d}Z")
        event_dict[NS_KEY] = ns
        return event_dict


def _default(value: Any) -> Any:
    """Render what orjson does not know (exceptions, sets, arbitrary objects) as text."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


_OPTIONS = orjson.OPT_NON_STR_KEYS


def render_json(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    """Render the event as one line of JSON (newlines and control characters are escaped).

    Lone surrogates (``"\\ud800"`` from a JSON body, a filename from ``os.fsdecode``) cannot be
    written as UTF-8: they are rendered as their ``\\udXXX`` escape text instead of failing.
    """
    try:
        return orjson.dumps(event_dict, default=_default, option=_OPTIONS).decode()
    except TypeError:
        # Integers beyond 64 bits, cycles, lone surrogates, keys orjson refuses: a faithful but
        # slower rendering that always succeeds.
        return orjson.dumps(_safe(event_dict), option=_OPTIONS).decode()


def utf8_safe(text: str) -> str:
    """``text`` unchanged when it is valid UTF-8 text, else with lone surrogates escaped."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _safe(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, int):
        return int(value) if -(2**63) <= value < 2**64 else str(value)
    if depth < 8 and isinstance(value, dict):
        return {utf8_safe(k if isinstance(k, str) else _text(k)): _safe(v, depth + 1) for k, v in value.items()}
    if depth < 8 and isinstance(value, list | tuple | set | frozenset):
        return [_safe(v, depth + 1) for v in value]
    return utf8_safe(_text(value))


def _text(value: Any) -> str:
    try:
        rendered = _default(value)
        return rendered if isinstance(rendered, str) else repr(rendered)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not break logging
        return f"<unrepresentable {type(value).__qualname__}: {type(exc).__name__}>"
