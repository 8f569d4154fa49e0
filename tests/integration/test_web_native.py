"""FastAPI's own server span (FastAPI releases with ``fastapi.telemetry``) in place of the contrib middleware."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from otel_logkit import attributes
from otel_logkit.config import Settings
from otel_logkit.web import native
from tests.integration.apps.capture import Captured, configured

# Only the tests of FastAPI's own span need a FastAPI with telemetry; the pure logic and the
# contrib path (forced below) run on every FastAPI.
needs_native = pytest.mark.skipif(not native.available(), reason="this FastAPI has no telemetry of its own")


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured into memory, with the web install."""
    yield from configured()


def get(app: Any, path: str) -> httpx.Response:
    """One GET through httpx's ASGITransport."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path)

    return asyncio.run(run())


def shop(**kwargs: Any) -> Any:
    """A small app built after configure() (as under otel-logkit-instrument)."""
    from fastapi import FastAPI

    app = FastAPI(**kwargs)

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def _stack_types(app: Any) -> list[str]:
    names, layer = [], app.middleware_stack
    while layer is not None and len(names) < 50:
        names.append(type(layer).__name__)
        layer = getattr(layer, "app", None)
    return names


@needs_native
def test_one_server_span_from_fastapi_itself(logkit: Captured) -> None:
    """One span per request, named by the route template, stable attribute names, no contrib middleware."""
    app = shop()
    response = get(app, "/orders/42?page=2")
    assert 200 == response.status_code
    [span] = logkit.spans.get_finished_spans()
    assert "GET /orders/{order_id}" == span.name
    assert "SERVER" == span.kind.name
    assert "fastapi" == span.instrumentation_scope.name
    assert {
        "http.request.method": "GET",
        "http.route": "/orders/{order_id}",
        "url.path": "/orders/42",
        "url.query": "page=2",
        "http.response.status_code": 200,
        attributes.REQUEST_ID: response.headers["x-request-id"],
    }.items() <= dict(span.attributes).items()
    assert "OpenTelemetryMiddleware" not in _stack_types(app)
    [line] = logkit.access()
    assert f"{span.context.trace_id:032x}" == line["trace_id"]
    assert f"{span.context.span_id:016x}" == line["span_id"]


@needs_native
def test_the_apps_own_telemetry_options_win(logkit: Captured) -> None:
    """FastAPI(telemetry={"operation_spans": True}) keeps the endpoint and serialization spans."""
    app = shop(telemetry={"operation_spans": True})
    get(app, "/orders/1")
    names = sorted(span.name for span in logkit.spans.get_finished_spans())
    assert "GET /orders/{order_id}" in names
    assert "fastapi.endpoint" in names


@needs_native
def test_excluded_urls_get_no_span_but_the_app_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_PYTHON_EXCLUDED_URLS (the contrib variable) keeps health checks out of the traces."""
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "healthz")
    for captured in configured():
        app = shop()
        assert 200 == get(app, "/healthz").status_code
        assert 200 == get(app, "/orders/1").status_code
        assert ["GET /orders/{order_id}"] == [span.name for span in captured.spans.get_finished_spans()]


@needs_native
def test_disabling_the_fastapi_instrumentation_disables_the_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi: no server span; the access line stays."""
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "fastapi")
    for captured in configured():
        app = shop()
        assert 200 == get(app, "/orders/1").status_code
        assert () == tuple(captured.spans.get_finished_spans())
        assert 1 == len(captured.access())


@needs_native
def test_an_app_instrumented_by_hand_still_has_one_server_span(logkit: Captured) -> None:
    """FastAPIInstrumentor.instrument_app(app) in the app's code: FastAPI steps aside, one span."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = shop()
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])
    try:
        get(app, "/orders/7")
        assert 1 == len(logkit.server_spans())
        assert 1 == len(logkit.access())
    finally:
        FastAPIInstrumentor.uninstrument_app(app)


def test_excluded_requests_match_path_or_url() -> None:
    """The exclude option matches like the contrib instrumentation, and never raises."""
    from opentelemetry.util.http import parse_excluded_urls

    exclude = native.ExcludedRequests(parse_excluded_urls("healthz,example.com:8000/metrics"))
    scope = {"path": "/healthz", "scheme": "http", "server": ("example.com", 8000), "query_string": b""}
    assert exclude(scope)
    assert exclude({**scope, "path": "/metrics"})
    assert not exclude({**scope, "path": "/orders"})
    assert not exclude({"path": None, "server": 7})


def test_defaults_follow_the_environment() -> None:
    """Operation spans and FastAPI's log records off; tracing off when disabled; exclude only with patterns."""

    def defaults(env: dict[str, str], **kwargs: bool) -> dict[str, object]:
        return native.telemetry_defaults(Settings.from_env(env), **kwargs)

    assert {"operation_spans": False, "logs": False} == defaults({})
    assert defaults({}, tracing=False)["tracing"] is False
    assert "exclude" in defaults({"OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "ping"})
    assert "exclude" not in defaults({"OTEL_PYTHON_EXCLUDED_URLS": " "})


def test_without_fastapi_telemetry_the_contrib_instrumentation_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """On FastAPI releases without their own telemetry, the contrib middleware makes the one span."""
    from otel_logkit import setup

    monkeypatch.setattr(setup.native_fastapi, "available", lambda: False)
    for captured in configured():
        app = shop()
        response = get(app, "/orders/3")
        [span] = captured.server_spans()
        assert "GET /orders/{order_id}" == span.name
        assert "opentelemetry.instrumentation.fastapi" == span.instrumentation_scope.name
        assert response.headers["x-request-id"] == span.attributes[attributes.REQUEST_ID]
        assert "OpenTelemetryMiddleware" in _stack_types(app)
