"""FastAPI behaves as without otel-logkit: regressions found by running FastAPI's own suite."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_logkit.web import native
from tests.integration.apps.capture import Captured, configured

pytestmark = pytest.mark.skipif(not native.available(), reason="this FastAPI has no telemetry of its own")


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured into memory, with the web install."""
    yield from configured()


def test_app_with_its_own_tracer_provider_keeps_fastapi_defaults(logkit: Captured) -> None:
    """FastAPI's test_tutorial002: an app with its own tracer provider keeps FastAPI's defaults (operation spans)."""
    from fastapi import FastAPI

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI(telemetry={"tracer_provider": provider})

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, Any]:
        return {"item_id": item_id}

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/items/2")

    try:
        assert {"item_id": 2} == asyncio.run(get()).json()
    finally:
        provider.shutdown()
    spans = exporter.get_finished_spans()
    assert ["GET /items/{item_id}"] == [span.name for span in spans if span.kind.name == "SERVER"]
    assert len(spans) > 1


def test_contrib_path_instruments_fastapi_when_the_app_imports_it() -> None:
    """Older FastAPI (contrib path): configure() imports neither FastAPI nor anyio; the app's import brings the span."""
    code = (
        "import asyncio, io, sys\n"
        "from otel_logkit.web import native\n"
        "native.available = lambda: False  # as on FastAPI releases without fastapi.telemetry\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "import otel_logkit\n"
        "spans = InMemorySpanExporter()\n"
        "otel_logkit.configure(stream=io.StringIO(), span_exporter=spans, env='test', logs_exporter='none')\n"
        "early = [m for m in ('fastapi', 'starlette', 'anyio') if m in sys.modules]\n"
        "assert not early, f'imported by configure(): {early}'\n"
        "import httpx\n"
        "from fastapi import FastAPI\n"
        "app = FastAPI()\n"
        "app.get('/x/{n}')(lambda n: {'n': n})\n"
        "async def get():\n"
        "    transport = httpx.ASGITransport(app=app)\n"
        "    async with httpx.AsyncClient(transport=transport, base_url='http://t') as client:\n"
        "        return await client.get('/x/1')\n"
        "assert asyncio.run(get()).status_code == 200\n"
        "[span] = [s for s in spans.get_finished_spans() if s.kind.name == 'SERVER']\n"
        "assert span.instrumentation_scope.name == 'opentelemetry.instrumentation.fastapi', span\n"
        "assert span.name == 'GET /x/{n}', span.name\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert 0 == result.returncode, result.stderr
