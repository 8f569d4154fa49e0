"""The shop plus two routes that misbehave on purpose, for trying the dashboard and the alerts.

``otel-logkit-instrument uvicorn examples.shop.drills:app`` serves everything ``main`` serves and:

    GET /drills/slow?ms=300           answers after ``ms`` milliseconds (default 300, at most 10 s)
    GET /drills/flaky?fail=true       a 500 from an unhandled error when ``fail`` is true, else 200

The shop's own module stays as it is: these routes exist only in this app object.
"""

from __future__ import annotations

import asyncio

import structlog
from fastapi import Query

from examples.shop.main import app

log = structlog.get_logger()

__all__ = ["app"]


class StockLevelError(RuntimeError):
    """The error the flaky route raises: its name is what `Top error keywords` shows."""


@app.get("/drills/slow")
async def slow(ms: int = Query(default=300, ge=0, le=10_000)) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    log.info("slow answer", waited_ms=ms)
    return {"waited_ms": ms}


@app.get("/drills/flaky")
async def flaky(fail: bool = False) -> dict[str, str]:
    if fail:
        raise StockLevelError("stock level service timed out")
    return {"status": "ok"}
