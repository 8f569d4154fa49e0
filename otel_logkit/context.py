"""Request-scoped ContextVars, alone in this module so that nothing imports in circles."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_logkit.jobs import job
    from otel_logkit.logs.buffer import RequestBuffer

request_id: ContextVar[str | None] = ContextVar("otel_logkit.request_id", default=None)
"""The id of the request being served, or ``None`` outside a request."""

current_job: ContextVar[job | None] = ContextVar("otel_logkit.job", default=None)
"""The innermost :func:`otel_logkit.job` running in this context, or ``None`` outside a job."""

log_buffer: ContextVar[RequestBuffer | None] = ContextVar("otel_logkit.log_buffer", default=None)
"""The request buffer of the request or job being run (``LOGKIT_REQUEST_BUFFER``), or ``None``."""
