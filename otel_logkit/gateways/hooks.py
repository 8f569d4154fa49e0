"""Hooks for the official ``requests`` and ``httpx`` instrumentations.

Every outbound call carries the request id header. Calls to a ``LOGKIT_GATEWAYS`` host also get
a gateway span name (``payment POST /v1/charges``), a redacted parameter summary, DEBUG lines
around the call and a WARNING/ERROR line with an ``error_code`` when it fails. The official
spans and attributes are kept; these hooks only add to them.

The instrumentations call no hook when the call raises (timeout, refused connection), so
:func:`instrument_kwargs` also installs a transparent observer one layer below them
(``requests.adapters.HTTPAdapter.send``, ``httpcore`` connection pools), inside the client span,
that records the failure and re-raises the very same exception.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from otel_logkit import context
from otel_logkit.gateways import calls
from otel_logkit.gateways.rules import GatewayRule, match_gateway

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from otel_logkit.config import Settings
    from otel_logkit.redact import Redactor


class GatewayHooks:
    """The request/response hooks for one configuration (settings + redactor).

    Args:
        settings: supplies ``gateways`` and ``request_id_header``.
        redactor: redacts parameter summaries and paths.
    """

    def __init__(self, settings: Settings, redactor: Redactor) -> None:
        self.rules: tuple[GatewayRule, ...] = settings.gateways
        self.header = settings.request_id_header
        self.redactor = redactor

    # -- shared logic -------------------------------------------------------------------------

    def on_request(
        self,
        span: Span,
        method: str,
        url: urllib.parse.SplitResult,
        headers: Any,
        body: bytes | str | None,
    ) -> None:
        """Set the request id header; for a gateway host, start the gateway call."""
        request_id = context.request_id.get()
        if request_id and headers is not None and self.header not in headers:
            headers[self.header] = request_id
        rule = match_gateway(self.rules, url.hostname)
        if rule is None:
            return
        sms = rule.kind == calls.SMS_KIND
        content_type = headers.get("content-type") if headers is not None else None
        params = calls.params_summary(self.redactor, url.query, body, content_type, sms=sms)
        operation = calls.operation_name(method, url.path, self.redactor)
        calls.start_call(span, rule.kind, operation, params, span_name=f"{rule.kind} {operation}")

    @staticmethod
    def on_response(span: Span, status_code: int | None) -> None:
        """Finish the gateway call carried by ``span`` (no-op for other hosts)."""
        state = calls.lookup(span)
        if state is not None and status_code is not None:
            calls.finish_response(span, state, status_code)

    # -- requests ------------------------------------------------------------------------------

    def requests_request_hook(self, span: Span, request: Any) -> None:
        """``request_hook(span, request)`` for ``RequestsInstrumentor``."""
        calls.failsafe("requests.request_hook", span, self._requests_request, span, request)

    def _requests_request(self, span: Span, request: Any) -> None:
        body = request.body if isinstance(request.body, bytes | str) else None
        url = urllib.parse.urlsplit(request.url or "")
        self.on_request(span, request.method or "GET", url, request.headers, body)

    def requests_response_hook(self, span: Span, request: Any, response: Any) -> None:
        """``response_hook(span, request, response)`` for ``RequestsInstrumentor``."""
        calls.failsafe("requests.response_hook", span, self.on_response, span, response.status_code)

    # -- httpx ---------------------------------------------------------------------------------

    def httpx_request_hook(self, span: Span, request: Any) -> None:
        """``request_hook(span, request)`` for ``HTTPXClientInstrumentor`` (sync clients)."""
        calls.failsafe("httpx.request_hook", span, self._httpx_request, span, request)

    async def httpx_async_request_hook(self, span: Span, request: Any) -> None:
        """``async_request_hook(span, request)`` for ``HTTPXClientInstrumentor``."""
        calls.failsafe("httpx.async_request_hook", span, self._httpx_request, span, request)

    def _httpx_request(self, span: Span, request: Any) -> None:
        method, url, headers, stream = request[0], request[1], request[2], request[3]
        method_text = method.decode() if isinstance(method, bytes) else str(method)
        split = urllib.parse.urlsplit(str(url))
        writable = headers if hasattr(headers, "__setitem__") else None
        self.on_request(span, method_text, split, writable, _httpx_body(stream))

    def httpx_response_hook(self, span: Span, request: Any, response: Any) -> None:
        """``response_hook(span, request, response)`` for ``HTTPXClientInstrumentor``."""
        calls.failsafe("httpx.response_hook", span, self.on_response, span, response[0])

    async def httpx_async_response_hook(self, span: Span, request: Any, response: Any) -> None:
        """``async_response_hook(span, request, response)`` for ``HTTPXClientInstrumentor``."""
        calls.failsafe("httpx.async_response_hook", span, self.on_response, span, response[0])


def _httpx_body(stream: Any) -> bytes | None:
    """The body of an httpx request when it is in memory; streamed bodies are not read."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - the httpx hooks only run with httpx installed
        return None
    if isinstance(stream, httpx.ByteStream):
        return b"".join(stream)
    return None


def instrument_kwargs(settings: Settings, redactor: Redactor) -> dict[str, dict[str, Any]]:
    """Keyword arguments for ``RequestsInstrumentor().instrument`` and ``HTTPXClientInstrumentor().instrument``.

    Returns:
        ``{"requests": {...}, "httpx": {...}}`` with the request/response hooks (and the async
        ones for httpx).
    """
    hooks = GatewayHooks(settings, redactor)
    return {
        "requests": {
            "request_hook": hooks.requests_request_hook,
            "response_hook": hooks.requests_response_hook,
        },
        "httpx": {
            "request_hook": hooks.httpx_request_hook,
            "response_hook": hooks.httpx_response_hook,
            "async_request_hook": hooks.httpx_async_request_hook,
            "async_response_hook": hooks.httpx_async_response_hook,
        },
    }


# -- failure observers ----------------------------------------------------------------------------
_MARK = "_otel_logkit_failure_observer"
_originals: dict[tuple[type, str], Callable[..., Any]] = {}


def _observe_failure(exc: BaseException) -> None:
    span = trace.get_current_span()
    state = calls.lookup(span)
    if state is not None:
        calls.failsafe("gateway.failure_observer", span, calls.finish_exception, span, state, exc)


def _wrap_sync(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def observed(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except Exception as exc:
            _observe_failure(exc)
            raise

    setattr(observed, _MARK, True)
    return observed


def _wrap_async(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def observed(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except Exception as exc:
            _observe_failure(exc)
            raise

    setattr(observed, _MARK, True)
    return observed


def _targets() -> list[tuple[type, str, bool]]:
    targets: list[tuple[type, str, bool]] = []
    try:
        from requests.adapters import HTTPAdapter

        targets.append((HTTPAdapter, "send", False))
    except ImportError:
        pass
    try:
        import httpcore

        targets.append((httpcore.ConnectionPool, "handle_request", False))
        targets.append((httpcore.AsyncConnectionPool, "handle_async_request", True))
    except ImportError:
        pass
    return targets


def install_failure_observers() -> None:
    """Observe failures below the instrumentations (idempotent; exceptions pass unchanged)."""
    for owner, name, is_async in _targets():
        current = owner.__dict__.get(name)
        if current is None or getattr(current, _MARK, False):
            continue
        _originals[(owner, name)] = current
        setattr(owner, name, _wrap_async(current) if is_async else _wrap_sync(current))


def uninstall_failure_observers() -> None:
    """Restore the library methods patched by :func:`install_failure_observers`."""
    for (owner, name), original in list(_originals.items()):
        setattr(owner, name, original)
        del _originals[(owner, name)]


def installed_observers() -> Mapping[tuple[type, str], Callable[..., Any]]:
    """The methods currently observed, with their originals (for diagnostics and tests)."""
    return dict(_originals)
