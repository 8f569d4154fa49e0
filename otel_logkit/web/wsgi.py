"""Request context for WSGI apps (Flask): request id, access line, exception line.

The same behaviour as :mod:`otel_logkit.web.asgi`. The access line is written when the
response iterable is exhausted or closed, so ``duration_ms`` covers a streamed body. The
request's id and structlog fields (whatever the app binds with :func:`otel_logkit.bind`) are
set around each step the server drives (call, each chunk, close) and the thread's own
fields are put back after each, so nothing bound in one request reaches the next request the
thread serves, while a streamed body still sees what its view bound. Only structlog's fields
are swapped: the app's other context variables (Flask's own contexts among them) behave as
without otel-logkit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace

from otel_logkit import _failsafe, context
from otel_logkit.config import Settings
from otel_logkit.logs.buffer import new_buffer as new_request_buffer
from otel_logkit.web._core import RequestLogging, RequestState, configured_settings
from otel_logkit.web.asgi import STATE_KEY
from otel_logkit.web.body import BodyCapture, BodySummarizer
from otel_logkit.web.client_ip import client_ip
from otel_logkit.web.request_id import new_request_id, sane_request_id
from otel_logkit.web.types import ExcInfo, StartResponse, WSGIApp, WSGIEnviron

if TYPE_CHECKING:
    from otel_logkit.logs.buffer import RequestBuffer


@dataclass
class WSGIRequestContextMiddleware:
    """WSGI middleware: request id, one access line, one error line per unhandled exception.

    Installed on Flask apps by :func:`otel_logkit.web.install`; usable on any WSGI app:
    ``app.wsgi_app = WSGIRequestContextMiddleware(app.wsgi_app)``.

    Args:
        app: the WSGI app to wrap.
        settings: header name, body summary size, trusted proxies, excluded URLs.
        redactor: summarizes request bodies for the error line; ``None``: the configured redactor.
        route: returns the matched route template of a finished request, if the framework knows it.
    """

    app: WSGIApp
    settings: Settings = field(default_factory=configured_settings)
    redactor: BodySummarizer | None = None
    route: Callable[[WSGIEnviron], str | None] | None = None

    def __post_init__(self) -> None:
        self._environ_key = "HTTP_" + self.settings.request_id_header.upper().replace("-", "_")
        self._header_lower = self.settings.request_id_header.lower()
        self._logging = RequestLogging(self.settings, self.redactor)

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request."""
        if STATE_KEY in environ:
            return self.app(environ, start_response)
        try:
            state = self._start(environ)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("request start", exc)
            return self.app(environ, start_response)
        environ[STATE_KEY] = state
        state.buffer = new_request_buffer()
        fields = _RequestFields(state.request_id, state.buffer)
        outer = fields.enter()
        try:
            result = self.app(environ, self._start_response(state, environ, start_response))
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._logging.log_error(state, exc)
            self._finish(state, environ, complete=False)
            raise
        finally:
            fields.leave(outer)
        return _Body(result, self, state, environ, fields)

    def _start(self, environ: WSGIEnviron) -> RequestState:
        # WSGI joins repeated headers with ", ": a joined value fails the sanity check.
        raw_id = environ.get(self._environ_key)
        ids = [raw_id.encode("latin-1", errors="replace")] if isinstance(raw_id, str) else []
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        path = _text(environ.get("PATH_INFO", ""))
        query = _text(environ.get("QUERY_STRING", ""))
        state = RequestState(
            request_id=sane_request_id(ids) or new_request_id(),
            method=str(environ.get("REQUEST_METHOD", "")),
            path=path,
            client_ip=client_ip(
                environ.get("REMOTE_ADDR") or None,
                [forwarded] if isinstance(forwarded, str) else [],
                self.settings.trusted_proxies,
            ),
            user_agent=_text(environ.get("HTTP_USER_AGENT"))[:512] or None,
            body=BodyCapture(self.settings.body_summary_max, environ.get("CONTENT_TYPE") or None),
            excluded=self._logging.is_excluded(path, query),
            owner=self._logging,
        )
        stream = environ.get("wsgi.input")
        if stream is not None:
            environ["wsgi.input"] = _CapturingInput(stream, state.body)
        return state

    def _start_response(
        self, state: RequestState, environ: WSGIEnviron, start_response: StartResponse
    ) -> StartResponse:
        header = (self.settings.request_id_header, state.request_id)
        lowered = self._header_lower

        def start_response_wrapper(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            try:
                state.status_code = int(status.split(" ", 1)[0])
                if state.route is None and self.route is not None:
                    # While the framework still holds the request (Flask drops it after).
                    state.route = self.route(environ)
                span_context = trace.get_current_span().get_span_context()
                if span_context.is_valid and state.span_context is None:
                    state.span_context = span_context
                if not any(name.lower() == lowered for name, _ in headers):
                    headers = [*headers, header]
            except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                _failsafe.report("response header", exc)
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return start_response_wrapper

    def _finish(self, state: RequestState, environ: WSGIEnviron, *, complete: bool) -> None:
        if state.finished:
            return
        if state.route is None and self.route is not None:
            try:
                state.route = self.route(environ)
            except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                _failsafe.report("route", exc)
        self._logging.log_access(state, complete=complete)


class _Body:
    """The app's response iterable, with the request's fields bound and the access line at its end."""

    def __init__(
        self,
        inner: Iterable[bytes],
        owner: WSGIRequestContextMiddleware,
        state: RequestState,
        environ: WSGIEnviron,
        fields: _RequestFields,
    ) -> None:
        self._inner = inner
        self._iterator: Iterator[bytes] | None = None
        self._owner = owner
        self._state = state
        self._environ = environ
        self._fields = fields

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        outer = self._fields.enter()
        try:
            if self._iterator is None:
                self._iterator = iter(self._inner)
            return next(self._iterator)
        except StopIteration:
            self._owner._finish(self._state, self._environ, complete=True)
            raise
        except BaseException as exc:
            if isinstance(exc, Exception):
                self._state.owner.log_error(self._state, exc)
            self._owner._finish(self._state, self._environ, complete=False)
            raise
        finally:
            self._fields.leave(outer)

    def close(self) -> None:
        """Close the app's iterable (WSGI requires it) and write the access line if not yet done."""
        outer = self._fields.enter()
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._owner._finish(self._state, self._environ, complete=False)
            self._fields.leave(outer)


_Outer = tuple[dict[str, Any], Any, Any]


class _RequestFields:
    """One request's id and structlog fields, set only while one of its steps runs."""

    __slots__ = ("buffer", "fields", "request_id")

    def __init__(self, request_id: str, buffer: RequestBuffer | None = None) -> None:
        self.request_id = request_id
        self.buffer = buffer  # the request buffer (LOGKIT_REQUEST_BUFFER), set with the id
        self.fields: dict[str, Any] = {}  # what the app binds; the id has its own ContextVar

    def enter(self) -> _Outer | None:
        """Set the request's id and fields; return what :meth:`leave` needs to put the thread's back."""
        try:
            outer = structlog.contextvars.get_contextvars()
            if self.fields:
                structlog.contextvars.bind_contextvars(**self.fields)
            return outer, context.request_id.set(self.request_id), context.log_buffer.set(self.buffer)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("request fields", exc)
            return None

    def leave(self, entered: _Outer | None) -> None:
        """Remember the request's fields (the app may have bound more), put the thread's back."""
        if entered is None:
            return
        outer, token, buffer_token = entered
        try:
            current = structlog.contextvars.get_contextvars()
            self.fields = {key: value for key, value in current.items() if outer.get(key, _MISSING) is not value}
            structlog.contextvars.unbind_contextvars(*(key for key in current if key not in outer))
            restore = {key: value for key, value in outer.items() if current.get(key, _MISSING) is not value}
            if restore:
                structlog.contextvars.bind_contextvars(**restore)
            context.log_buffer.reset(buffer_token)
            context.request_id.reset(token)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("request fields", exc)


_MISSING = object()


class _CapturingInput:
    """``wsgi.input`` that lets the body summary see what the app reads, as it reads it."""

    def __init__(self, stream: Any, capture: BodyCapture) -> None:
        self._stream = stream
        self._capture = capture

    def _seen(self, data: bytes) -> bytes:
        try:
            self._capture.feed(data)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("request body", exc)
        return data

    def read(self, *args: Any) -> bytes:
        """Read like the wrapped stream."""
        return self._seen(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        """Read one line like the wrapped stream."""
        return self._seen(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        """Read lines like the wrapped stream."""
        return [self._seen(line) for line in self._stream.readlines(*args)]

    def __iter__(self) -> Iterator[bytes]:
        return (self._seen(line) for line in self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _text(value: Any) -> str:
    # PEP 3333 carries header bytes as latin-1 str; undo that to read UTF-8 paths correctly.
    if not isinstance(value, str):
        return ""
    return value.encode("latin-1", errors="replace").decode("utf-8", errors="replace")
