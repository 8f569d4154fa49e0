"""Logger injection for FastAPI endpoints, and a stdlib ``LoggerAdapter`` for code on ``logging``.

Usage::

    from fastapi import Depends
    from otel_logkit.fastapi import RequestLogger, request_logger

    @app.post("/orders")
    async def create_order(order: Order, log: RequestLogger = Depends(request_logger)) -> Order:
        log.info("order created", order_id=order.id)
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any, TypeAlias

import structlog
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from otel_logkit import context

RequestLogger: TypeAlias = Any
"""Type of the injected logger: a structlog bound logger (typed loosely, as structlog's own API)."""


def request_logger(request: HTTPConnection) -> RequestLogger:
    """FastAPI dependency: a structlog logger named after the endpoint's module, bound to the request.

    The logger carries ``request_id`` explicitly, so it keeps it even where context variables
    do not follow (a thread pool the code hands the logger to, for instance).

    Args:
        request: the request (or websocket) being served, injected by FastAPI.
    """
    endpoint = request.scope.get("endpoint")
    name = getattr(endpoint, "__module__", None) or "otel_logkit.request"
    logger = structlog.get_logger(name)
    request_id = context.request_id.get()
    return logger.bind(request_id=request_id) if request_id is not None else logger


class RequestLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A stdlib ``LoggerAdapter`` that adds the current ``request_id`` to each record's ``extra``.

    Lines from stdlib loggers already carry ``request_id`` through otel-logkit's bridge; the
    adapter also sets it as a record attribute (``record.request_id``) for handlers and filters
    outside that chain.

    Args:
        logger: the stdlib logger to adapt.
        extra: fixed fields added to every record.
    """

    def __init__(self, logger: logging.Logger, extra: MutableMapping[str, object] | None = None) -> None:
        super().__init__(logger, dict(extra or {}))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the fixed fields, the request id and the call's own ``extra`` (which wins)."""
        fields: dict[str, object] = dict(self.extra or {})
        request_id = context.request_id.get()
        if request_id is not None:
            fields["request_id"] = request_id
        fields.update(kwargs.get("extra") or {})
        kwargs["extra"] = fields
        return msg, kwargs


def get_logger_adapter(name: str, **extra: object) -> RequestLoggerAdapter:
    """``RequestLoggerAdapter(logging.getLogger(name), extra)``: a request-aware stdlib logger."""
    return RequestLoggerAdapter(logging.getLogger(name), extra)


async def internal_error_handler(request: HTTPConnection, exc: Exception) -> Response:
    """Opt-in 500 handler: a JSON body carrying the request id and no internals.

    otel-logkit never changes responses by itself (the 500 body is the framework's); register
    this to give clients an id to quote::

        app.add_exception_handler(Exception, otel_logkit.fastapi.internal_error_handler)

    Starlette still re-raises the exception after the handler, so the error line is written.

    Args:
        request: the failed request.
        exc: the unhandled exception (not shown to the client).
    """
    body = {"detail": "Internal Server Error", "request_id": context.request_id.get()}
    return JSONResponse(body, status_code=500)
