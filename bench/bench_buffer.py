"""Cost of the request buffer per request, and of fingerprints + repeated-error suppression per ERROR line.

Per request: a pure ASGI app behind otel-logkit's middleware (in process, no sockets) logs 20
DEBUG lines and answers 200 or 503, in prod (WARNING). Variants, interleaved, medians of rounds:
- buffer off: the 20 DEBUG lines are filtered (what prod costs without the buffer);
- buffer on, 200: the lines are built and held, then dropped;
- buffer on, 503: the lines are held, then redacted, rendered and written.
Per ERROR line: ``log.error`` with the fingerprint only (dedup off), with dedup on under its burst
(every line written), and with dedup suppressing (a storm of one error).

Run: ``.venv/bin/python bench/bench_buffer.py [requests] [rounds]``.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from bench.bench_logging import NullStream  # noqa: E402
from otel_logkit import setup  # noqa: E402
from otel_logkit.config import Settings  # noqa: E402
from otel_logkit.web import RequestContextMiddleware  # noqa: E402

log = structlog.get_logger("bench.buffer")


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Logs 20 DEBUG lines, then answers the status the path names."""
    for index in range(20):
        log.debug("step", index=index, order_id=1234)
    status = 503 if scope["path"] == "/fail" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [],
        "client": ("127.0.0.1", 1),
        "query_string": b"",
    }


def configure(**env: str) -> None:
    setup.reset()
    settings = Settings.from_env(
        {"LOGKIT_ENV": "prod", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", **env}
    )
    setup.configure(settings, stream=NullStream(), instrument=False, cache_loggers=False)


def per_request(path: str, requests: int, **env: str) -> float:
    configure(**env)
    middleware = RequestContextMiddleware(app)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            await middleware(_scope(path), receive, send)
        return time.perf_counter() - started

    return asyncio.run(run()) / requests * 1e6


def per_error_line(lines: int, **env: str) -> float:
    configure(**env)
    error_log = structlog.get_logger("bench.errors")
    started = time.perf_counter()
    for attempt in range(lines):
        error_log.error("database unavailable", attempt=attempt)
    return (time.perf_counter() - started) / lines * 1e6


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    logging.disable(logging.NOTSET)
    variants = {
        "buffer off, 200 (20 DEBUG lines filtered)": lambda: per_request("/ok", requests),
        "buffer on, 200 (20 lines held, dropped)": lambda: per_request("/ok", requests, LOGKIT_REQUEST_BUFFER="DEBUG"),
        "buffer off, 503": lambda: per_request("/fail", requests),
        "buffer on, 503 (20 lines held, written)": lambda: per_request(
            "/fail", requests, LOGKIT_REQUEST_BUFFER="DEBUG"
        ),
        "ERROR line, fingerprint, dedup off": lambda: per_error_line(requests),
        "ERROR line, dedup on, under its burst": lambda: per_error_line(
            requests, LOGKIT_DEDUP_WINDOW="3600", LOGKIT_DEDUP_BURST="1000000"
        ),
        "ERROR line, dedup on, suppressed": lambda: per_error_line(
            requests, LOGKIT_DEDUP_WINDOW="3600", LOGKIT_DEDUP_BURST="5"
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            results[name].append(run())
    setup.reset()
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"{requests} requests (or lines) x {rounds} rounds, interleaved; medians")
    print(f"{'variant':48} {'us':>9} {'ratio':>7}")
    base_ok = medians["buffer off, 200 (20 DEBUG lines filtered)"]
    base_fail = medians["buffer off, 503"]
    base_error = medians["ERROR line, fingerprint, dedup off"]
    bases = [base_ok, base_ok, base_fail, base_fail, base_error, base_error, base_error]
    for (name, value), base in zip(medians.items(), bases, strict=True):
        print(f"{name:48} {value:>9.2f} {value / base:>7.2f}")


if __name__ == "__main__":
    main()
