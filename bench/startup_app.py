"""The app ``bench/bench_startup.py`` starts: one FastAPI route that logs a line."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

app = FastAPI()
_log = structlog.get_logger("bench.startup")


@app.get("/ping")
async def ping() -> dict[str, bool]:
    """Answer the benchmark's first request."""
    _log.info("ping")
    return {"pong": True}
