"""Flask: server spans from the official WSGI middleware, and the hooks that run inside a request.

- Spans are made with ``opentelemetry-instrumentation-wsgi``'s functions (request and response
  attributes, span name, the W3C context read from the environ), as the contrib Flask
  instrumentation makes them, with the same names and attributes. The span starts with the
  request and is current until Flask's teardown, where it ends with an unhandled exception
  recorded on it, as the contrib instrumentation does; when Flask has matched the URL
  (``request_started``) it is renamed ``METHOD /rule`` and given ``http.route``.
- Nothing replaces a Flask class, uses a deprecated Flask API, or holds an app: the hooks are
  Flask signals connected once to module-level functions, and the app being called reaches the
  innermost WSGI callable through a ContextVar for the duration of the call.
- ``Flask.log_exception`` is not patched: the app's own ``app.logger`` handlers (mail, Sentry,
  files) see every exception. Only otel-logkit's console drops Flask's "Exception on ..." line
  when otel-logkit's error line already carries the exception (``DuplicateErrorFilter``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any
from wsgiref.util import request_uri

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.http import ExcludeList, sanitize_method

from otel_logkit import _failsafe
from otel_logkit.web._core import RequestState
from otel_logkit.web.asgi import STATE_KEY
from otel_logkit.web.types import StartResponse, WSGIApp, WSGIEnviron

SPAN_KEY = "otel_logkit.server_span"
"""WSGI environ key of the request's server span, until it ends."""

_TOKENS_KEY = "otel_logkit.server_span_tokens"
_STARTED_KEY = "otel_logkit.request_started"

_current_call: ContextVar[WSGIApp | None] = ContextVar("otel_logkit_flask_call", default=None)
_started: ContextVar[RequestState | None] = ContextVar("otel_logkit_flask_started", default=None)


def call_current(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
    """The innermost WSGI callable: the Flask app whose ``__call__`` is running (see :func:`calling`)."""
    call = _current_call.get()
    if call is None:  # pragma: no cover - only reachable through calling()
        raise RuntimeError("otel-logkit: no Flask app is being called")
    return call(environ, start_response)


def calling(app_call: WSGIApp, chain: WSGIApp, environ: WSGIEnviron, start_response: StartResponse) -> Any:
    """Run ``chain`` (which ends in :func:`call_current`) with ``app_call`` as the innermost app."""
    token = _current_call.set(app_call)
    try:
        return chain(environ, start_response)
    finally:
        _current_call.reset(token)


class FlaskTracing:
    """WSGI middleware: a server span per request around ``app``, inside the request context middleware.

    Args:
        app: the WSGI app to trace (:func:`call_current`).
        tracer_provider: where spans go.
        excluded: URLs that get no span (``OTEL_PYTHON_FLASK_EXCLUDED_URLS`` or
            ``OTEL_PYTHON_EXCLUDED_URLS``, as the contrib Flask instrumentation reads them).
    """

    def __init__(self, app: WSGIApp, tracer_provider: trace.TracerProvider, excluded: ExcludeList | None) -> None:
        from opentelemetry.instrumentation._semconv import (
            _get_schema_url,
            _OpenTelemetrySemanticConventionStability,
            _OpenTelemetryStabilitySignalType,
        )

        from otel_logkit import __version__

        _OpenTelemetrySemanticConventionStability._initialize()  # type: ignore[no-untyped-call]
        self._mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
            _OpenTelemetryStabilitySignalType.HTTP
        )
        self._tracer = trace.get_tracer(
            "otel_logkit.web.flask", __version__, tracer_provider, schema_url=_get_schema_url(self._mode)
        )
        self._app = app
        self._excluded = excluded

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request in a server span, unless its URL is excluded."""
        try:
            span, attributes = self._start(environ)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("server span", exc)
            span, attributes = None, {}
        if span is None:
            return self._app(environ, start_response)
        try:
            result = self._app(environ, self._start_response(span, attributes, start_response))
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit too: the span ends and its context is released.
            if isinstance(exc, Exception):
                _fail(span, exc, self._mode)
            end_span(environ)
            raise
        return _SpanBody(result, environ)

    def _start(self, environ: WSGIEnviron) -> tuple[trace.Span | None, dict[str, Any]]:
        import opentelemetry.instrumentation.wsgi as otel_wsgi
        from opentelemetry.instrumentation.utils import _start_internal_or_server_span

        # From the environ, not flask.request: the Host header must not be read before Flask has
        # checked it against TRUSTED_HOSTS.
        if self._excluded is not None and self._excluded.url_disabled(request_uri(environ)):
            return None, {}
        attributes: dict[str, Any] = otel_wsgi.collect_request_attributes(environ, self._mode)
        span, token = _start_internal_or_server_span(  # type: ignore[no-untyped-call]
            tracer=self._tracer,
            span_name=otel_wsgi.get_default_span_name(environ),
            start_time=None,
            context_carrier=environ,
            context_getter=otel_wsgi.wsgi_getter,
            attributes=attributes,
        )
        if span.is_recording() and getattr(span, "kind", None) == trace.SpanKind.SERVER:
            custom = otel_wsgi.collect_custom_request_headers_attributes(environ)
            if custom:
                span.set_attributes(custom)
        tokens = [token] if token is not None else []
        tokens.append(otel_context.attach(trace.set_span_in_context(span)))
        environ[SPAN_KEY] = span
        environ[_TOKENS_KEY] = tokens
        return span, attributes

    def _start_response(self, span: trace.Span, attributes: dict[str, Any], start_response: StartResponse) -> Any:
        mode = self._mode

        def traced_start_response(status: str, headers: list[tuple[str, str]], *args: Any, **kwargs: Any) -> Any:
            try:
                import opentelemetry.instrumentation.wsgi as otel_wsgi
                from opentelemetry.instrumentation.propagators import get_global_response_propagator

                otel_wsgi.add_response_attributes(span, status, headers, attributes, mode)
                if span.is_recording() and getattr(span, "kind", None) == trace.SpanKind.SERVER:
                    custom = otel_wsgi.collect_custom_response_headers_attributes(headers)
                    if custom:
                        span.set_attributes(custom)
                propagator = get_global_response_propagator()  # type: ignore[no-untyped-call]
                if propagator is not None:
                    propagator.inject(headers, setter=otel_wsgi.default_response_propagation_setter)
            except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                _failsafe.report("response span", exc)
            return start_response(status, headers, *args, **kwargs)

        return traced_start_response


class _SpanBody:
    """The app's response iterable; ends the span when it ends, if Flask's teardown did not."""

    def __init__(self, inner: Iterable[bytes], environ: WSGIEnviron) -> None:
        self._inner = inner
        self._iterator: Iterator[bytes] | None = None
        self._environ = environ

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            if self._iterator is None:
                self._iterator = iter(self._inner)
            return next(self._iterator)
        except StopIteration:
            end_span(self._environ)
            raise

    def close(self) -> None:
        """Close the app's iterable, then end the span."""
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            end_span(self._environ)


def _fail(span: trace.Span, exc: Exception, mode: Any) -> None:
    # What the official WSGI middleware records when the app raises.
    try:
        from opentelemetry.instrumentation._semconv import _report_new
        from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

        if _report_new(mode) and span.is_recording():
            span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
    except Exception as error:  # noqa: BLE001 - telemetry must not reach the app
        _failsafe.report("server span", error)


def end_span(environ: WSGIEnviron) -> None:
    """End the request's server span and detach its context, once."""
    span = environ.pop(SPAN_KEY, None)
    tokens = environ.pop(_TOKENS_KEY, ())
    try:
        if isinstance(span, trace.Span):
            span.end()
        for token in reversed(tokens):
            otel_context.detach(token)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
        _failsafe.report("server span end", exc)


def span_name(method: str, rule: str | None) -> str:
    """The contrib Flask instrumentation's span name: ``GET /orders/<int:order_id>``, or the method."""
    sanitized = sanitize_method(method.strip())
    if sanitized == "_OTHER":
        return "HTTP"
    return f"{sanitized} {rule}" if rule else sanitized


# -- signals ------------------------------------------------------------------------------------
def connect_signals() -> None:
    """Connect the in-request hooks to Flask's signals (idempotent; module-level receivers)."""
    from flask.signals import got_request_exception, request_started, request_tearing_down

    request_started.connect(_on_request_started, weak=False)
    request_tearing_down.connect(_on_request_tearing_down, weak=False)
    got_request_exception.connect(_on_exception, weak=False)


def disconnect_signals() -> None:
    """Undo :func:`connect_signals` (tests)."""
    from flask.signals import got_request_exception, request_started, request_tearing_down

    request_started.disconnect(_on_request_started)
    request_tearing_down.disconnect(_on_request_tearing_down)
    got_request_exception.disconnect(_on_exception)


def _request() -> tuple[Any, RequestState | None]:
    from flask.globals import request

    state = request.environ.get(STATE_KEY)
    return request, state if isinstance(state, RequestState) else None


def _on_request_started(sender: Any, **extra: Any) -> None:
    try:
        request, state = _request()
        if state is None:
            return
        span = request.environ.get(SPAN_KEY)
        rule = getattr(request.url_rule, "rule", None)
        if isinstance(span, trace.Span) and span.is_recording() and isinstance(rule, str):
            span.update_name(span_name(str(request.environ.get("REQUEST_METHOD", "")), rule))
            span.set_attribute(HTTP_ROUTE, rule)
        request.environ[_STARTED_KEY] = _started.set(state)
        if state.inner_token is None:
            # Tags the current (server) span with the request id and puts the id in baggage.
            state.inner_token = state.owner.enter_span(state)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
        _failsafe.report("request started", exc)


def _on_request_tearing_down(sender: Any, exc: BaseException | None = None, **extra: Any) -> None:
    try:
        request, state = _request()
        # A request context copied to another thread (copy_current_request_context) tears down
        # there too: only the context that started the request ends its span.
        if state is None or _started.get() is not state:
            return
        span = request.environ.get(SPAN_KEY)
        if exc is not None and isinstance(span, trace.Span) and span.is_recording():
            # What trace.use_span(end_on_exit=True) records, as the contrib instrumentation does.
            if isinstance(exc, Exception):
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if state.span_context is None:
            span_context = trace.get_current_span().get_span_context()
            state.span_context = span_context if span_context.is_valid else None
        if state.route is None:
            state.route = flask_route(request.environ)
        token, state.inner_token = state.inner_token, None
        if token is not None:
            otel_context.detach(token)
        end_span(request.environ)
        _started.reset(request.environ.pop(_STARTED_KEY))
    except Exception as error:  # noqa: BLE001 - telemetry must not reach the app
        _failsafe.report("request teardown", error)


def _on_exception(sender: Any, exception: BaseException | None = None, **extra: Any) -> None:
    try:
        request, state = _request()
        if state is not None and exception is not None:
            state.route = state.route or flask_route(request.environ)
            state.owner.log_error(state, exception)
    except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
        _failsafe.report("error line", exc)


def flask_route(environ: WSGIEnviron) -> str | None:
    """The Flask URL rule of a request, e.g. ``/orders/<int:order_id>``."""
    request = environ.get("werkzeug.request")
    rule = getattr(request, "url_rule", None)
    template = getattr(rule, "rule", None)
    return template if isinstance(template, str) else None
