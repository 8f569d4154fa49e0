"""The export hand-off as a structlog processor, shared by the in-process queue and the helper channel.

This module imports nothing of the SDK's logs machinery: on the helper path the app never
builds an SDK record, so it need not import the exporters either.
"""

from __future__ import annotations

import time
from typing import Any

from structlog.typing import EventDict, WrappedLogger

from otel_logkit._event_keys import NO_EXPORT_KEY

DROP_REPORT_INTERVAL = 10.0
"""Seconds between two WARNING lines reporting records dropped from the export."""


class OncePerInterval:
    """Lets a report through at once, then at most once per ``interval`` seconds (or when forced)."""

    __slots__ = ("_interval", "_last")

    def __init__(self, interval: float = DROP_REPORT_INTERVAL) -> None:
        self._interval = interval
        self._last: float | None = None

    def due(self, *, force: bool = False) -> bool:
        """Whether a report may go now; if so, the interval starts again."""
        now = time.monotonic()
        if force or self._last is None or now - self._last >= self._interval:
            self._last = now
            return True
        return False


def weight(event: EventDict) -> int:
    """Approximate bytes an event holds: its top-level strings plus a fixed overhead per field."""
    total = 256
    for value in event.values():
        total += len(value) if type(value) is str else 64
    return total


class LogSink:
    """Hands every event that reaches it to export (``put``) and passes the event on unchanged."""

    __slots__ = ()

    def put(self, event_dict: EventDict) -> None:
        """Take a copy of ``event_dict`` for export, or count it as dropped."""
        raise NotImplementedError

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export what was handed over so far; ``False`` when ``timeout`` seconds did not suffice."""
        raise NotImplementedError

    @property
    def exported_total(self) -> int:
        """Records the exporter accepted since start-up."""
        raise NotImplementedError

    @property
    def dropped_total(self) -> int:
        """Records dropped from the export since start-up."""
        raise NotImplementedError

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Act as a structlog processor: hand the event over for export and pass it on."""
        if event_dict.pop(NO_EXPORT_KEY, None):
            return event_dict
        if "level" not in event_dict:
            # An app's own chain without a level processor: the method name is the level.
            event_dict = {**event_dict, "level": method_name}
            self.put(event_dict)
            del event_dict["level"]
            return event_dict
        self.put(event_dict)
        return event_dict


def plain(value: Any, depth: int = 0) -> Any:  # noqa: PLR0911 - one flat dispatch on type
    """``value`` as built-in types only (exact ``str``, ``int``, ``dict``, ...), for ``marshal``."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None or kind is bytes:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if depth < 8 and isinstance(value, dict):
        return {k if type(k) is str else str(k): plain(v, depth + 1) for k, v in value.items()}
    if depth < 8 and isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in value]
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a raising __str__ must not cost the record
        return f"<unprintable {kind.__name__}>"
