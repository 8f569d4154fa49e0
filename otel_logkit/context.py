"""Request-scoped ContextVars, alone in this module so that nothing imports in circles."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("otel_logkit.request_id", default=None)
"""The id of the request being served, or ``None`` outside a request."""
