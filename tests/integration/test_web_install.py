"""How the middleware gets onto apps: auto-install, explicit use, mounts, idempotence, lazy imports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from otel_logkit import web
from otel_logkit.config import Settings
from tests.integration.apps.capture import Captured, configured


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured into memory, with the web install."""
    yield from configured()


@pytest.fixture
def bare() -> Iterator[Captured]:
    """otel-logkit configured without instrumentation and without the web install."""
    yield from configured(instrument=False)


def get(app: Any, path: str, **kwargs: Any) -> httpx.Response:
    """One GET through httpx's ASGITransport (app exceptions become 500s)."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path, **kwargs)

    return asyncio.run(run())


def test_install_twice_gives_one_access_line(logkit: Captured) -> None:
    """install() is idempotent: a second call does not stack a second middleware."""
    from fastapi import FastAPI

    web.install(Settings(), None)
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, int]:
        return {"x": 1}

    response = get(app, "/x")
    assert len(response.headers.get_list("x-request-id")) == 1
    assert len(logkit.access()) == 1


def test_explicit_middleware_on_an_auto_installed_app_is_not_doubled(logkit: Captured) -> None:
    """app.add_middleware(RequestContextMiddleware) on top of the install: still one line."""
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(web.RequestContextMiddleware, settings=Settings())

    @app.get("/x")
    async def x() -> dict[str, int]:
        return {"x": 1}

    get(app, "/x")
    assert len(logkit.access()) == 1


def test_mounted_app_has_one_access_line_with_prefixed_route(logkit: Captured) -> None:
    """A FastAPI app mounted in another: one access line; the route template keeps the prefix."""
    from fastapi import FastAPI

    outer, inner = FastAPI(), FastAPI()

    @inner.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    outer.mount("/v1", inner)
    assert get(outer, "/v1/items/3").status_code == 200
    [access] = logkit.access()
    assert (access["route"], access["path"]) == ("/v1/items/{item_id}", "/v1/items/3")


def test_plain_starlette_app(logkit: Captured) -> None:
    """A Starlette (not FastAPI) app gets the middleware and an unhandled exception is logged."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def boom(request: Any) -> PlainTextResponse:
        raise ValueError("starlette boom")

    app = Starlette(routes=[Route("/ok/{name}", ok), Route("/boom", boom)])
    assert get(app, "/ok/a").headers["x-request-id"]
    response = get(app, "/boom", headers={"X-Request-ID": "st-1"})
    assert (response.status_code, response.headers["x-request-id"]) == (500, "st-1")
    assert [line["route"] for line in logkit.access()] == ["/ok/{name}", "/boom"]
    assert [line["error_type"] for line in logkit.errors()] == ["ValueError"]


def test_custom_500_handler_keeps_its_body_and_the_error_line(logkit: Captured) -> None:
    """The opt-in handler answers with the request id; the error line is still written once."""
    from fastapi import FastAPI

    from otel_logkit.fastapi import internal_error_handler

    app = FastAPI()
    app.add_exception_handler(Exception, internal_error_handler)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    response = get(app, "/boom", headers={"X-Request-ID": "h-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "request_id": "h-1"}
    assert [line["request_id"] for line in logkit.errors()] == ["h-1"]


def test_explicit_middleware_without_install(bare: Captured) -> None:
    """Without the install, app.add_middleware(...) alone gives the id and the access line."""
    from fastapi import FastAPI

    app = FastAPI()
    app.add_middleware(web.RequestContextMiddleware, settings=Settings())

    @app.get("/x")
    async def x() -> dict[str, int]:
        return {"x": 1}

    response = get(app, "/x", headers={"X-Request-ID": "ex-1"})
    assert response.headers["x-request-id"] == "ex-1"
    [access] = bare.access()
    assert (access["request_id"], access["route"]) == ("ex-1", "/x")


def test_explicit_wsgi_middleware_without_install(bare: Captured) -> None:
    """The WSGI middleware wraps any WSGI app by hand."""
    from flask import Flask

    app = Flask("explicit")

    @app.get("/x")
    def x() -> dict[str, int]:
        return {"x": 1}

    app.wsgi_app = web.WSGIRequestContextMiddleware(app.wsgi_app, Settings())  # type: ignore[method-assign]
    response = app.test_client().open("/x", buffered=True, headers={"X-Request-ID": "wx-1"})
    assert response.headers["X-Request-ID"] == "wx-1"
    assert [line["request_id"] for line in bare.access()] == ["wx-1"]


def test_uninstall_restores_the_classes(logkit: Captured) -> None:
    """uninstall() puts the frameworks' own methods back."""
    from flask import Flask
    from starlette.applications import Starlette

    assert hasattr(Starlette.__call__, "__otel_logkit_original__")
    assert hasattr(Flask.__call__, "__otel_logkit_original__")
    web.uninstall()
    assert not hasattr(Starlette.__call__, "__otel_logkit_original__")
    assert not hasattr(Starlette.build_middleware_stack, "__otel_logkit_original__")
    assert not hasattr(Flask.__call__, "__otel_logkit_original__")


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (nothing imported yet), bounded to 60 s."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_install_imports_no_framework() -> None:
    """install() imports neither Starlette nor Flask; each is patched when the app imports it."""
    code = (
        "import sys\n"
        "from otel_logkit.config import Settings\n"
        "from otel_logkit import web\n"
        "web.install(Settings())\n"
        "assert not any(m.split('.')[0] in ('starlette', 'fastapi', 'flask') for m in sys.modules), 'imported'\n"
        "from starlette.applications import Starlette\n"
        "assert hasattr(Starlette.__call__, '__otel_logkit_original__'), 'not patched'\n"
        "assert 'flask' not in sys.modules\n"
    )
    result = run_fresh(code)
    assert result.returncode == 0, result.stderr


def test_configure_imports_flask_only_when_the_app_does() -> None:
    """configure() leaves Flask unimported; the app's import brings otel-logkit's Flask server span."""
    code = (
        "import io, sys\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "import otel_logkit\n"
        "spans = InMemorySpanExporter()\n"
        "otel_logkit.configure(stream=io.StringIO(), span_exporter=spans, env='test', logs_exporter='none')\n"
        "assert 'flask' not in sys.modules, 'flask imported by configure()'\n"
        "from flask import Flask\n"
        "app = Flask('t')\n"
        "app.add_url_rule('/x/<int:n>', 'x', lambda n: 'ok')\n"
        "assert app.test_client().get('/x/1').status_code == 200\n"
        "[span] = spans.get_finished_spans()\n"
        "assert span.name == 'GET /x/<int:n>', span.name\n"
        "assert span.instrumentation_scope.name == 'otel_logkit.web.flask', span.instrumentation_scope\n"
        "assert 'opentelemetry.instrumentation.flask' not in sys.modules, 'contrib Flask instrumentation applied'\n"
    )
    result = run_fresh(code)
    assert result.returncode == 0, result.stderr


async def _pong(request: Any) -> Any:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse("pong")


def _freed_after_a_request() -> bool:
    import gc
    import weakref

    from starlette.applications import Starlette
    from starlette.routing import Route

    app = Starlette(routes=[Route("/ping", _pong)])

    async def get(target: Any) -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url="http://t") as client:
            return (await client.get("/ping")).status_code

    assert 200 == asyncio.run(get(app))
    ref = weakref.ref(app)
    gc.collect()
    gc.disable()
    try:
        del app
        return ref() is None
    finally:
        gc.enable()


def test_a_starlette_app_is_freed_on_zero_refcount_as_without_otel_logkit() -> None:
    """The middleware otel-logkit caches on an app holds it weakly: freed at once, as a bare app is."""
    from tests.integration.apps.capture import configured

    assert _freed_after_a_request()  # bare
    for _ in configured():
        assert _freed_after_a_request()


@pytest.mark.parametrize("enabled", [True, False], ids=["LOGKIT_GC_FREEZE=true", "default"])
def test_gc_freeze_before_the_first_request_only_when_asked(enabled: bool) -> None:
    """LOGKIT_GC_FREEZE=true: start-up objects go to the permanent generation at the first request."""
    import gc

    from fastapi import FastAPI

    from otel_logkit.web import _core

    gc.unfreeze()
    _core._frozen_in.clear()
    try:
        for _ in configured(gc_freeze=enabled):
            app = FastAPI()

            @app.get("/x")
            async def x() -> dict[str, int]:
                return {"x": 1}

            assert gc.get_freeze_count() == 0
            assert get(app, "/x").status_code == 200
            assert get(app, "/x").status_code == 200
            frozen = gc.get_freeze_count()
            assert (frozen > 0) is enabled
    finally:
        gc.unfreeze()
        _core._frozen_in.clear()
