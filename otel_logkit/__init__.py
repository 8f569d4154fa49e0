"""otel-logkit: OpenTelemetry-native structured logging for Python web APIs."""

from __future__ import annotations

from typing import Any

import structlog

from otel_logkit.config import Settings
from otel_logkit.exceptions import ConfigError
from otel_logkit.gateways.wrapper import gateway
from otel_logkit.jobs import job
from otel_logkit.redact import register_detector
from otel_logkit.setup import configure

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Settings",
    "__version__",
    "bind",
    "configure",
    "gateway",
    "get_logger",
    "job",
    "register_detector",
]


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """Return a structlog logger (named ``name``, or after the calling module)."""
    if name is None:
        return structlog.get_logger(**initial_values)
    return structlog.get_logger(name, **initial_values)


def bind(**fields: Any) -> None:
    """Bind ``fields`` to every following line of the current request, task or thread context."""
    structlog.contextvars.bind_contextvars(**fields)
