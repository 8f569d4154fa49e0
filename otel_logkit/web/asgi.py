"""Request context for ASGI apps (FastAPI, Starlette): request id, access line, exception line.

:class:`RequestContextMiddleware` is a pure ASGI middleware (no ``BaseHTTPMiddleware``): it
wraps ``receive`` to summarize the body as the app reads it and ``send`` to echo the request id
and time the whole response, including a streamed body. :class:`SpanProbe` sits inside the
OpenTelemetry server span and lends it to the lines the outer middleware writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otel_logkit import _failsafe, context
from otel_logkit.config import Settings
from otel_logkit.logs.buffer import new_buffer as new_request_buffer
from otel_logkit.web._core import (
    RequestLogging,
    RequestState,
    bind_request_id,
    configured_settings,
    unbind_request_id,
)
from otel_logkit.web.body import BodyCapture, BodySummarizer
from otel_logkit.web.client_ip import client_ip
from otel_logkit.web.request_id import new_request_id, sane_request_id
from otel_logkit.web.types import ASGIApp, Message, Receive, Scope, Send

STATE_KEY = "otel_logkit.request"
"""Scope key holding the :class:`RequestState` of the request (an ASGI scope extension)."""

_FINAL = frozenset({"http.response.body", "http.response.zerocopy"})


@dataclass
class RequestContextMiddleware:
    """Pure ASGI middleware: request id, one access line, one error line per unhandled exception.

    Installed automatically by :func:`otel_logkit.web.install` (outermost, so the request id
    reaches every response, including Starlette's own 500). Usable explicitly too:
    ``app.add_middleware(RequestContextMiddleware)``; there it sits inside Starlette's
    ``ServerErrorMiddleware``, so a 500 produced by that middleware carries no request-id header.

    Args:
        app: the ASGI app to wrap.
        settings: header name, body summary size, trusted proxies, excluded URLs
            (default: those :func:`otel_logkit.configure` put in force, else the environment's).
        redactor: summarizes request bodies for the error line; ``None``: the configured redactor.
        span_probe: a :class:`SpanProbe` sits inside the app's server span and does the span
            work (set by the install; leave ``False`` when adding the middleware by hand).
    """

    app: ASGIApp
    settings: Settings = field(default_factory=configured_settings)
    redactor: BodySummarizer | None = None
    span_probe: bool = False

    def __post_init__(self) -> None:
        self._header = self.settings.request_id_header.lower().encode("latin-1")
        self._logging = RequestLogging(self.settings, self.redactor)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection; anything but HTTP passes through untouched."""
        if scope["type"] != "http" or STATE_KEY in scope:
            await self.app(scope, receive, send)
            return
        try:
            state = self._start(scope)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("request start", exc)
            await self.app(scope, receive, send)
            return
        scope[STATE_KEY] = state
        bound = bind_request_id(state.request_id)
        state.buffer = new_request_buffer()
        buffer_token = context.log_buffer.set(state.buffer) if state.buffer is not None else None
        # With a SpanProbe inside (auto-install), the probe does the span work, in the span.
        token = None if self.span_probe else self._logging.enter_span(state)
        try:
            await self.app(scope, self._receive(state, receive), self._send(state, scope, send))
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._logging.log_error(state, exc)
            else:
                state.client_gone = True  # cancelled: the server gave up on a client that left
            self._finish(state, scope, complete=False)
            raise
        else:
            self._finish(state, scope, complete=False)
        finally:
            if token is not None:
                _detach(token)
            if buffer_token is not None:
                context.log_buffer.reset(buffer_token)
            unbind_request_id(bound)

    def _start(self, scope: Scope) -> RequestState:
        ids: list[bytes] = []
        forwarded: list[str] = []
        user_agent: str | None = None
        content_type: str | None = None
        for name, value in scope.get("headers") or ():
            lowered = name.lower()
            if lowered == self._header:
                ids.append(value)
            elif lowered == b"user-agent":
                user_agent = value.decode("latin-1")[:512]
            elif lowered == b"content-type":
                content_type = value.decode("latin-1")
            elif lowered == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
        peer = scope.get("client")
        path: str = scope.get("path", "")
        query: bytes = scope.get("query_string") or b""
        return RequestState(
            request_id=sane_request_id(ids) or new_request_id(),
            method=scope.get("method", ""),
            path=path,
            client_ip=client_ip(str(peer[0]) if peer else None, forwarded, self.settings.trusted_proxies),
            user_agent=user_agent,
            body=BodyCapture(self.settings.body_summary_max, content_type),
            excluded=self._logging.is_excluded(path, query.decode("latin-1")),
            owner=self._logging,
        )

    def _receive(self, state: RequestState, receive: Receive) -> Receive:
        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                state.client_gone = True
            elif message["type"] == "http.request":
                try:
                    state.body.feed(message.get("body", b""))
                except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                    _failsafe.report("request body", exc)
            return message

        return receive_wrapper

    def _send(self, state: RequestState, scope: Scope, send: Send) -> Send:
        header = (self.settings.request_id_header.encode("latin-1"), state.request_id.encode("ascii"))
        lowered = self._header

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                try:
                    state.status_code = int(message["status"])
                    headers = list(message.get("headers") or ())
                    if not any(name.lower() == lowered for name, _ in headers):
                        headers.append(header)
                        message = {**message, "headers": headers}
                except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                    _failsafe.report("response header", exc)
            await send(message)
            if (kind in _FINAL and not message.get("more_body", False)) or kind == "http.response.pathsend":
                self._finish(state, scope, complete=True)

        return send_wrapper

    def _finish(self, state: RequestState, scope: Scope, *, complete: bool) -> None:
        if state.finished:
            return
        if state.route is None:
            try:
                state.route = route_template(scope)
            except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                _failsafe.report("route", exc)
        self._logging.log_access(state, complete=complete)


@dataclass
class SpanProbe:
    """Inner half of the middleware, placed inside the OpenTelemetry server span.

    It records the server span on the request state (so the access and error lines carry its
    ids), tags it with the request id, puts the id in W3C baggage for outbound calls, and writes
    the error line while the span is still current. Without an outer
    :class:`RequestContextMiddleware` it does nothing.

    Args:
        app: the ASGI app to wrap.
    """

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        state: RequestState | None = scope.get(STATE_KEY) if scope["type"] == "http" else None
        if state is None:
            await self.app(scope, receive, send)
            return
        owner = state.owner
        token = owner.enter_span(state)
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            try:
                state.route = route_template(scope)
            except Exception as error:  # noqa: BLE001 - telemetry must not reach the app
                _failsafe.report("route", error)
            owner.log_error(state, exc)
            raise
        finally:
            if token is not None:
                _detach(token)


def route_template(scope: Scope) -> str | None:
    """The matched route's template, e.g. ``/orders/{order_id}``, including mount prefixes."""
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    root_path: str = scope.get("root_path", "")
    app_root_path: str = scope.get("app_root_path", root_path)
    return root_path[len(app_root_path) :] + template


def _detach(token: Any) -> None:
    from opentelemetry import context as otel_context

    try:
        otel_context.detach(token)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
        _failsafe.report("context detach", exc)
