"""FastAPI behaves as without otel-logkit: regressions found by running FastAPI's own suite."""

from __future__ import annotations

import asyncio
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
