"""Automatic installation of the request-context middleware on Starlette/FastAPI and Flask apps.

Mechanism (patching classes, so that apps need no code change):

- ``Starlette.__call__`` runs every request through one :class:`RequestContextMiddleware` per
  app, outermost: the request id reaches every response, including the 500 that Starlette's
  ``ServerErrorMiddleware`` sends, and ``duration_ms`` covers the whole stack.
- ``Starlette.build_middleware_stack`` and ``FastAPI.build_middleware_stack`` put a
  :class:`SpanProbe` just inside ``ServerErrorMiddleware``. The OpenTelemetry FastAPI
  instrumentation re-wraps that part inside its server span, so the probe sees the span: the
  access and error lines carry its ``trace_id``/``span_id``.
- ``FastAPI.__init__`` receives otel-logkit's ``telemetry`` options (:mod:`otel_logkit.web.native`)
  on FastAPI releases that trace requests themselves; the app's own options win.
- ``Flask.__call__`` (wrapped with ``*args, **kwargs``) runs every request through a
  :class:`WSGIRequestContextMiddleware` and otel-logkit's server span (:mod:`otel_logkit.web.flask`);
  no other Flask method is patched, no Flask class is replaced and no app object is kept.

No framework is imported by otel-logkit: each class is patched when its module is imported by
the app (a post-import hook), or at once if it is already imported. Patching twice is a no-op;
:func:`install` again only changes the settings used by apps that serve their next request.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import weakref
from types import ModuleType
from typing import Any

import wrapt

from otel_logkit import _failsafe
from otel_logkit.config import Settings
from otel_logkit.web._core import was_logged
from otel_logkit.web.asgi import RequestContextMiddleware, SpanProbe
from otel_logkit.web.body import BodySummarizer
from otel_logkit.web.types import Receive, Scope, Send

_PATCHED = "__otel_logkit_original__"
_APP_ATTRIBUTE = "_otel_logkit_middleware"


class _Installed:
    settings: Settings | None = None
    redactor: BodySummarizer | None = None
    fastapi_telemetry: dict[str, Any] | None = None
    flask_tracer_provider: Any = None
    flask_chains: tuple[int, dict[bool, Any]] | None = None
    flask_signals = False
    generation = 0
    hooks_registered = False
    patched: list[tuple[type, str, Any]] = []  # noqa: RUF012 - process-wide registry of patches


_lock = threading.Lock()


def install(
    settings: Settings,
    redactor: BodySummarizer | None = None,
    fastapi_telemetry: dict[str, Any] | None = None,
    flask_tracer_provider: Any = None,
) -> None:
    """Install the request-context middleware on every Starlette/FastAPI and Flask app.

    Idempotent. Also silences uvicorn's access logger: the access line replaces it.

    Args:
        settings: the effective settings.
        redactor: an :class:`otel_logkit.redact.Redactor`; ``None`` uses a blunt local fallback.
        fastapi_telemetry: default ``FastAPI(telemetry=...)`` options for apps created from now
            on (FastAPI releases with their own telemetry); ``None`` leaves FastAPI's defaults.
        flask_tracer_provider: where Flask's server spans go; ``None``: no Flask spans (the
            request id, access and error lines stay).
    """
    with _lock:
        _Installed.settings = settings
        _Installed.redactor = redactor
        _Installed.fastapi_telemetry = fastapi_telemetry
        _Installed.flask_tracer_provider = flask_tracer_provider
        _Installed.generation += 1
        register = not _Installed.hooks_registered
        _Installed.hooks_registered = True
    for module_name, patcher in _PATCHERS:
        if register:
            # Runs at once when the module is already imported, else right after its import.
            wrapt.register_post_import_hook(patcher, module_name)
        elif module_name in sys.modules:
            patcher(sys.modules[module_name])
    _silence_uvicorn_access()


def uninstall() -> None:
    """Undo the class patches (tests). Apps already built keep their middleware stacks."""
    with _lock:
        for cls, name, original in reversed(_Installed.patched):
            setattr(cls, name, original)
        _Installed.patched.clear()
        for name, kind in (("werkzeug", WerkzeugAccessFilter), ("uvicorn.error", DuplicateErrorFilter)):
            server_logger = logging.getLogger(name)
            for log_filter in [f for f in server_logger.filters if isinstance(f, kind)]:
                server_logger.removeFilter(log_filter)
        _Installed.settings = None
        _Installed.redactor = None
        _Installed.fastapi_telemetry = None
        _Installed.flask_tracer_provider = None
        _Installed.flask_chains = None
        _Installed.generation += 1
        if _Installed.flask_signals:
            from otel_logkit.web import flask as flask_support

            _Installed.flask_signals = False
            flask_support.disconnect_signals()


# What servers and frameworks write for an unhandled exception that otel-logkit's error line
# already carries: uvicorn's and Flask's own templates.
_SERVER_ERROR_TEMPLATES = ("Exception in ASGI application", "Exception on ")


class DuplicateErrorFilter(logging.Filter):
    """Drop, from otel-logkit's console, a server's own line for an exception it already wrote."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record unless it is a server's duplicate of otel-logkit's error line."""
        exc_info = record.exc_info
        if not (exc_info and was_logged(exc_info[1])):
            return True
        return not (isinstance(record.msg, str) and record.msg.startswith(_SERVER_ERROR_TEMPLATES))


class WerkzeugAccessFilter(logging.Filter):
    """Drop the werkzeug development server's per-request line: the access line replaces it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep werkzeug's other lines (start-up, errors)."""
        return not (record.name == "werkzeug" and isinstance(record.msg, str) and record.msg.endswith('] "%s" %s %s'))


def _silence_werkzeug_access() -> None:
    from otel_logkit.logs.stdlib import add_console_filter

    add_console_filter(WerkzeugAccessFilter())


def _silence_uvicorn_access() -> None:
    from otel_logkit.logs.stdlib import add_console_filter, silence_logger

    # On otel-logkit's console only: the app's own handlers on these loggers still get them.
    silence_logger("uvicorn.access")
    add_console_filter(DuplicateErrorFilter())


def _patch(cls: type, name: str, make: Any) -> None:
    current = cls.__dict__.get(name)
    if current is None or getattr(current, _PATCHED, None) is not None:
        return
    replacement = functools.wraps(current)(make(current))
    setattr(replacement, _PATCHED, current)
    setattr(cls, name, replacement)
    _Installed.patched.append((cls, name, current))


def _patch_starlette(module: ModuleType) -> None:
    with _lock:
        if _Installed.settings is None:
            return
        _patch(module.Starlette, "__call__", _wrap_asgi_call)
        _patch(module.Starlette, "build_middleware_stack", _wrap_build)


def _patch_fastapi(module: ModuleType) -> None:
    with _lock:
        if _Installed.settings is None:
            return
        _patch(module.FastAPI, "build_middleware_stack", _wrap_build)
        _patch(module.FastAPI, "__init__", _wrap_fastapi_init)


def _patch_flask(module: ModuleType) -> None:
    from otel_logkit.web import flask as flask_support

    with _lock:
        if _Installed.settings is None:
            return
        _patch(module.Flask, "__call__", _wrap_wsgi_call)
        if not _Installed.flask_signals:
            _Installed.flask_signals = True
            flask_support.connect_signals()
    _silence_werkzeug_access()


_PATCHERS = (
    ("starlette.applications", _patch_starlette),
    ("fastapi.applications", _patch_fastapi),
    ("flask.app", _patch_flask),
)


def _middleware_for(app: Any, make: Any) -> Any:
    """The app's middleware for the current installation, built on first use."""
    cached = app.__dict__.get(_APP_ATTRIBUTE)
    if cached is not None and cached[0] == _Installed.generation:
        return cached[1]
    settings = _Installed.settings
    if settings is None:
        return None
    middleware = make(settings, _Installed.redactor)
    app.__dict__[_APP_ATTRIBUTE] = (_Installed.generation, middleware)
    return middleware


class _WeakAppCall:
    """The app's own ``__call__`` for the middleware cached on the app: holds the app weakly, so
    the cache (app -> middleware -> this) is no reference cycle and an app is freed at once."""

    __slots__ = ("_app", "_original")

    def __init__(self, original: Any, app: Any) -> None:
        self._original = original
        self._app = weakref.ref(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app()
        if app is None:  # pragma: no cover - a request keeps its app alive while it runs
            return
        await self._original(app, scope, receive, send)


def _wrap_asgi_call(original: Any) -> Any:
    async def call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await original(self, scope, receive, send)
            return
        try:
            middleware = _middleware_for(
                self,
                lambda settings, redactor: RequestContextMiddleware(
                    _WeakAppCall(original, self), settings, redactor, span_probe=True
                ),
            )
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("middleware setup", exc)
            middleware = None
        if middleware is None:
            await original(self, scope, receive, send)
            return
        await middleware(scope, receive, send)

    return call


def _wrap_build(original: Any) -> Any:
    def build_middleware_stack(self: Any) -> Any:
        stack = original(self)
        if _Installed.settings is None:
            return stack
        try:
            from starlette.middleware.errors import ServerErrorMiddleware

            if isinstance(stack, ServerErrorMiddleware):
                if not isinstance(stack.app, SpanProbe):
                    stack.app = SpanProbe(stack.app)
                return stack
            return stack if isinstance(stack, SpanProbe) else SpanProbe(stack)
        except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
            _failsafe.report("middleware stack", exc)
            return stack

    return build_middleware_stack


def _wrap_fastapi_init(original: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces FastAPI.__init__
        defaults = _Installed.fastapi_telemetry
        options = kwargs.get("telemetry")
        # An app that brings its own tracer provider (or options that are not a dict) runs its
        # own telemetry pipeline: otel-logkit's defaults are for spans it exports itself.
        if defaults and (options is None or (isinstance(options, dict) and "tracer_provider" not in options)):
            kwargs["telemetry"] = {**defaults, **(options or {})}
        original(self, *args, **kwargs)

    return __init__


def _flask_chain(traced: bool) -> Any:
    """The WSGI chain Flask apps' calls run through, for the current installation.

    One per process (apps differ only in the innermost call, passed down per call), so no app
    object is referenced from here. ``traced=False`` for apps the contrib Flask instrumentation
    already traces (``FlaskInstrumentor.instrument_app``): no second server span.
    """
    cached = _Installed.flask_chains
    if cached is None or cached[0] != _Installed.generation:
        cached = _Installed.flask_chains = (_Installed.generation, {})
    built = cached[1].get(traced)
    if built is not None:
        return built
    settings = _Installed.settings
    if settings is None:
        return None
    from opentelemetry.util.http import parse_excluded_urls

    from otel_logkit.web import flask as flask_support
    from otel_logkit.web.wsgi import WSGIRequestContextMiddleware

    inner: Any = flask_support.call_current
    if traced and _Installed.flask_tracer_provider is not None:
        # Without opentelemetry-instrumentation-wsgi (otel-logkit[flask]) Flask gets no spans.
        with contextlib.suppress(ImportError):
            excluded = (
                parse_excluded_urls(settings.flask_span_excluded_urls) if settings.flask_span_excluded_urls else None
            )
            inner = flask_support.FlaskTracing(inner, _Installed.flask_tracer_provider, excluded)
    chain = WSGIRequestContextMiddleware(inner, settings, _Installed.redactor, route=flask_support.flask_route)
    cached[1][traced] = chain
    return chain


def _wrap_wsgi_call(original: Any) -> Any:
    from otel_logkit.web import flask as flask_support

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        chain = None
        if len(args) == 2 and not kwargs:
            try:
                chain = _flask_chain(not getattr(self, "_is_instrumented_by_opentelemetry", False))
            except Exception as exc:  # noqa: BLE001 - telemetry must not reach the app
                _failsafe.report("middleware setup", exc)
        if chain is None:
            return original(self, *args, **kwargs)
        environ, start_response = args
        return flask_support.calling(functools.partial(original, self), chain, environ, start_response)

    return call
