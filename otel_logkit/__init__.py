"""otel-logkit: OpenTelemetry-native structured logging for Python web APIs.

The public names are imported on first use (PEP 562), so that ``otel-logkit-instrument``, which
only validates the configuration before handing over, starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_logkit.config import Settings
    from otel_logkit.exceptions import ConfigError
    from otel_logkit.gateways.wrapper import gateway
    from otel_logkit.jobs import job
    from otel_logkit.redact import register_detector
    from otel_logkit.setup import configure, force_flush, shutdown

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Settings",
    "__version__",
    "bind",
    "configure",
    "force_flush",
    "gateway",
    "get_logger",
    "job",
    "register_detector",
    "shutdown",
]

_LAZY = {
    "ConfigError": "otel_logkit.exceptions",
    "Settings": "otel_logkit.config",
    "configure": "otel_logkit.setup",
    "force_flush": "otel_logkit.setup",
    "shutdown": "otel_logkit.setup",
    "gateway": "otel_logkit.gateways.wrapper",
    "job": "otel_logkit.jobs",
    "register_detector": "otel_logkit.redact",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_logkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """Return a structlog logger (named ``name``, or after the calling module)."""
    import structlog

    if name is None:
        return structlog.get_logger(**initial_values)
    return structlog.get_logger(name, **initial_values)


def bind(**fields: Any) -> None:
    """Bind ``fields`` to every following line of the current request, task or thread context."""
    import structlog

    structlog.contextvars.bind_contextvars(**fields)
