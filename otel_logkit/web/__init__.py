"""Request context for web frameworks: ASGI (FastAPI/Starlette) and WSGI (Flask)."""

from __future__ import annotations

from otel_logkit.web._core import ACCESS_LOGGER, BAGGAGE_KEY, ERROR_LOGGER
from otel_logkit.web.asgi import RequestContextMiddleware, SpanProbe
from otel_logkit.web.install import install, uninstall
from otel_logkit.web.wsgi import WSGIRequestContextMiddleware

__all__ = [
    "ACCESS_LOGGER",
    "BAGGAGE_KEY",
    "ERROR_LOGGER",
    "RequestContextMiddleware",
    "SpanProbe",
    "WSGIRequestContextMiddleware",
    "install",
    "uninstall",
]
