"""Test apps for the request-context middleware: FastAPI and Flask, built after configure().

Frameworks are imported inside the factories, so that an app is built from the classes that
configure() instrumented; annotations stay evaluated (no ``from __future__ import annotations``)
because FastAPI resolves them against these local names.
"""

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import structlog

from otel_logkit import context

stdlib_logger = logging.getLogger("tests.web_apps")


def make_fastapi_app() -> Any:
    """A FastAPI app covering sync/async endpoints, streaming, background tasks and failures."""
    from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request, WebSocket
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel

    from otel_logkit.fastapi import RequestLogger, get_logger_adapter, request_logger

    app = FastAPI()
    log = structlog.get_logger("tests.web_apps")
    adapter = get_logger_adapter("tests.web_apps.adapter")

    class Order(BaseModel):
        item: str
        quantity: int

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "ok"}

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, Any]:
        log.info("order read", order_id=order_id)
        return {"order_id": order_id, "request_id": context.request_id.get()}

    @app.get("/sync/{name}")
    def sync_endpoint(name: str) -> dict[str, Any]:
        # Runs in the thread pool: the request id must follow.
        log.info("sync work", name=name, thread=threading.current_thread().name)
        stdlib_logger.info("stdlib sync work %s", name)
        return {"request_id": context.request_id.get()}

    @app.post("/orders")
    async def create_order(order: Order, logger: Annotated[RequestLogger, Depends(request_logger)]) -> dict[str, Any]:
        logger.info("order created", item=order.item)
        adapter.info("adapter line")
        return {"ok": True}

    @app.post("/fail")
    async def fail(request: Request) -> dict[str, str]:
        await request.body()
        raise RuntimeError("boom: internal detail")

    @app.post("/fail-unread")
    async def fail_unread() -> dict[str, str]:
        raise KeyError("never read the body")

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        form = await request.form()
        size = sum(len(await v.read()) for v in form.values() if hasattr(v, "read"))
        raise ValueError(f"upload rejected after {size} bytes")

    @app.post("/consume")
    async def consume(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/stream")
    async def stream(chunks: int = 5, delay: float = 0.0) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for index in range(chunks):
                log.info("chunk", index=index)
                if delay:
                    await asyncio.sleep(delay)
                yield f"chunk {index}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/stream-sync")
    def stream_sync() -> StreamingResponse:
        def body() -> Iterator[bytes]:
            for index in range(3):
                log.info("sync chunk", index=index)
                yield f"chunk {index}\n".encode()

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/stream-fail")
    async def stream_fail() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first\n"
            raise RuntimeError("failed mid-stream")

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        def sync_task() -> None:
            log.info("background sync task")

        async def async_task() -> None:
            log.info("background async task")

        tasks.add_task(sync_task)
        tasks.add_task(async_task)
        return {"queued": True}

    @app.get("/slow")
    async def slow(delay: float = 0.01) -> dict[str, Any]:
        await asyncio.sleep(delay)
        log.info("slow done")
        return {"request_id": context.request_id.get()}

    @app.get("/outbound-headers")
    async def outbound_headers() -> dict[str, str]:
        # What an instrumented requests/httpx call would send from here.
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    @app.get("/unavailable")
    async def unavailable() -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": "maintenance"}, status_code=503)

    @app.api_route("/echo-log", methods=["GET", "POST"])
    async def echo_log(request: Request) -> dict[str, int]:
        # What careless apps do: log the query and the JSON body as fields, whatever they hold.
        fields: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {"raw": body}
            fields.update(parsed if isinstance(parsed, dict) else {"value": parsed})
        log.info("echo", **{str(key): value for key, value in fields.items()})
        stdlib_logger.warning("echo %s %s", request.url.path, fields)
        return {"fields": len(fields)}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"echo {text}")
        await websocket.close()

    return app


def make_flask_app() -> Any:
    """A Flask app covering plain, streaming and failing views."""
    from flask import Flask, Response, abort, request, stream_with_context

    app = Flask("web_apps")
    log = structlog.get_logger("tests.web_apps.flask")

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> dict[str, Any]:
        log.info("order read", order_id=order_id)
        stdlib_logger.info("stdlib flask line")
        return {"order_id": order_id, "request_id": context.request_id.get()}

    @app.post("/fail")
    def fail() -> dict[str, Any]:
        request.get_data()
        raise RuntimeError("flask boom")

    @app.get("/missing")
    def missing() -> dict[str, Any]:
        abort(404)

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for index in range(3):
                log.info("flask chunk", index=index)
                yield f"chunk {index}\n"

        return Response(stream_with_context(body()), mimetype="text/plain")

    @app.get("/slow")
    def slow() -> dict[str, Any]:
        time.sleep(0.005)
        log.info("slow done")
        return {"request_id": context.request_id.get()}

    return app
