"""The request buffer (LOGKIT_REQUEST_BUFFER): prod logs at WARNING, and every failed or slow
request still shows its own DEBUG trail, in order; successful requests write none."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

import otel_logkit
from otel_logkit.logs import buffer as buffer_module
from otel_logkit.logs.buffer import RequestBuffer
from otel_logkit.testing import Captured, capture

stdlib_logger = logging.getLogger("tests.buffer.lib")


def make_app() -> Any:
    """An app whose endpoint logs a DEBUG trail (structlog, stdlib, a thread), then ends as asked."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    log = structlog.get_logger("tests.buffer")

    @app.get("/work/{tag}")
    async def work(tag: str, lines: int = 3, outcome: str = "ok", sleep_ms: int = 0) -> Any:
        for index in range(lines):
            log.debug("step", tag=tag, index=index)
        stdlib_logger.debug("library detail for %s", tag)
        await asyncio.to_thread(log.debug, "in the threadpool", tag=tag)
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        log.info("handled", tag=tag)
        if outcome == "raise":
            raise RuntimeError(f"boom {tag}")
        if outcome == "503":
            return JSONResponse({"tag": tag}, status_code=503)
        return {"tag": tag}

    @app.get("/stream-fail")
    async def stream_fail() -> StreamingResponse:
        async def body() -> Any:
            log.debug("streaming starts")
            yield b"one"
            raise RuntimeError("stream broke")

        return StreamingResponse(body())

    return app


def call(app: Any, *paths: str) -> list[httpx.Response]:
    """Concurrent GETs through httpx's ASGITransport (app exceptions become 500s)."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return list(await asyncio.gather(*(client.get(path) for path in paths)))

    return asyncio.run(run())


@pytest.fixture
def prod() -> Iterator[Captured]:
    """prod (WARNING) with the buffer at DEBUG, everything exported into memory."""
    with capture(
        env="prod", service="buffered", instrument=True, request_buffer=logging.DEBUG, slow_request_ms=500.0
    ) as captured:
        yield captured


def _trail(lines: list[dict[str, Any]], response: httpx.Response) -> list[str]:
    request_id = response.headers["x-request-id"]
    return [line["message"] for line in lines if line.get("buffered") and line["request_id"] == request_id]


def test_a_failed_request_writes_its_debug_trail_in_order(prod: Captured) -> None:
    """An unhandled exception: the held lines come first, in order, marked buffered, then the error line."""
    app = make_app()
    (response,) = call(app, "/work/a?outcome=raise")
    assert 500 == response.status_code
    lines = prod.lines()
    request_lines = [line for line in lines if line.get("request_id") == response.headers["x-request-id"]]
    messages = [line["message"] for line in request_lines]
    assert ["step", "step", "step", "library detail for a", "in the threadpool", "handled"] == messages[:6]
    assert all(line["buffered"] for line in request_lines[:6])
    assert ["DEBUG", "DEBUG", "DEBUG", "DEBUG", "DEBUG", "INFO"] == [line["level"] for line in request_lines[:6]]
    assert "unhandled exception" == messages[6]
    timestamps = [line["timestamp"] for line in request_lines[:6]]
    assert sorted(timestamps) == timestamps
    assert len({line["trace_id"] for line in request_lines}) == 1


def test_a_successful_request_writes_no_held_line(prod: Captured) -> None:
    """200: the DEBUG and INFO lines are dropped; prod's WARNING level holds."""
    app = make_app()
    call(app, "/work/b")
    assert [] == [line for line in prod.lines() if line["level"] in ("DEBUG", "INFO")]


def test_a_returned_5xx_and_a_slow_request_write_their_trails(prod: Captured) -> None:
    """A 503 the app returns and a request slower than LOGKIT_SLOW_REQUEST_MS both keep their trail."""
    app = make_app()
    returned, slow = call(app, "/work/c?outcome=503", "/work/d?sleep_ms=600")
    lines = prod.lines()
    trail = ["step", "step", "step", "library detail for {}", "in the threadpool", "handled"]
    assert [m.format("c") for m in trail] == _trail(lines, returned)  # its access line is an ERROR line
    # The slow request's access line (INFO, below prod's level) follows the decision: written, buffered.
    assert [*(m.format("d") for m in trail), "request"] == _trail(lines, slow)


def test_concurrent_requests_keep_their_own_trails() -> None:
    """200 concurrent requests, every fifth failing: each failed one shows exactly its own trail."""
    paths = [f"/work/t{i}?outcome={'raise' if i % 5 == 0 else 'ok'}" for i in range(200)]
    # No request counts as slow here, however loaded the machine: only failures keep a trail.
    with capture(env="prod", instrument=True, request_buffer=logging.DEBUG, slow_request_ms=3_600_000.0) as prod:
        responses = call(make_app(), *paths)
        lines = prod.lines()
    by_request: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if line.get("buffered"):
            by_request.setdefault(line["request_id"], []).append(line)
    failed = {r.headers["x-request-id"]: path for r, path in zip(responses, paths, strict=True) if r.status_code == 500}
    assert 40 == len(failed)
    assert set(failed) == set(by_request)
    for request_id, trail in by_request.items():
        tag = failed[request_id].split("/")[2].split("?")[0]
        assert {tag} == {line.get("tag", tag) for line in trail}
        assert 6 == len(trail)


def test_held_lines_are_exported_only_for_failed_requests(prod: Captured) -> None:
    """The export follows stdout: the trail of a failed request, nothing of a successful one."""
    app = make_app()
    call(app, "/work/e", "/work/f?outcome=raise")
    records = prod.log_records()
    exported = [(r.log_record.body, r.log_record.attributes.get("tag")) for r in records]
    assert ("step", "f") in exported
    assert ("step", "e") not in exported
    assert all(r.log_record.attributes.get("buffered") for r in records if r.log_record.body == "step")


def test_the_buffer_is_bounded_per_request_and_says_what_it_dropped() -> None:
    """Past LOGKIT_REQUEST_BUFFER_MAX lines the oldest go; the first written line counts them."""
    with capture(env="prod", instrument=True, request_buffer=logging.DEBUG, request_buffer_max=10) as captured:
        call(make_app(), "/work/g?lines=50&outcome=raise")
        trail = [line for line in captured.lines() if line.get("buffered")]
    assert 10 == len(trail)
    assert 43 == trail[0]["buffer_dropped"]  # 50 steps, the library line, the threadpool line, "handled"
    assert ["step"] * 7 == [line["message"] for line in trail[:7]]
    assert 43 == trail[0]["index"]


def test_a_stream_that_breaks_writes_its_trail(prod: Captured) -> None:
    """A streamed body failing mid-way is a failed request: its trail is written."""
    call(make_app(), "/stream-fail")
    assert ["streaming starts", "request"] == [line["message"] for line in prod.lines() if line.get("buffered")]


def test_lines_outside_requests_are_filtered_as_without_the_buffer(prod: Captured) -> None:
    """No request, no buffer: DEBUG stays filtered in prod."""
    structlog.get_logger("app").debug("start-up detail")
    logging.getLogger("lib").info("library start-up")
    assert [] == prod.lines()


def test_a_failed_job_writes_its_trail() -> None:
    """Jobs get the same buffer: a job that fails (or has failed items) writes its DEBUG trail."""
    with capture(env="prod", request_buffer=logging.DEBUG) as captured:
        with otel_logkit.job("fine"):
            structlog.get_logger("job").debug("quiet step")
        with otel_logkit.job("partly") as run:
            structlog.get_logger("job").debug("loud step")
            run.failed("item-7")
        lines = captured.lines()
    assert ["loud step"] == [line["message"] for line in lines if line.get("buffered") and line["level"] == "DEBUG"]
    assert [] == [line for line in lines if line["message"] == "quiet step"]


def test_memory_stays_bounded_with_thousands_of_slow_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 open buffers x 1,000 lines each hold at most the process-wide budget."""
    monkeypatch.setattr(buffer_module, "_budget", buffer_module._Budget(100_000))
    buffers = [RequestBuffer(1_000, lambda *_: "", lambda _: None) for _ in range(5_000)]
    event: dict[str, Any] = {"message": "step"}
    started = time.monotonic()
    for _ in range(1_000):
        for held in buffers:
            held.hold(None, "debug", event)
    assert time.monotonic() - started < 120  # bounded loop, not a timing check
    assert 100_000 == sum(len(held) for held in buffers)
    assert 5_000_000 - 100_000 == sum(held.dropped for held in buffers)
    for held in buffers:
        held.discard()
    assert 0 == buffer_module._budget.held


def _fingerprints_in_fresh_processes() -> list[str]:
    import json
    import subprocess

    from tests.support.processes import BIN, ROOT, base_env

    script = """
import structlog, otel_logkit
otel_logkit.configure()
def charge(order_id):
    try:
        raise ConnectionError(f"payment gateway down for order {order_id}")
    except ConnectionError:
        structlog.get_logger("shop.payments").exception("charge failed", order_id=order_id)
def refund():
    structlog.get_logger("shop.payments").error("refund failed")
charge(1)
charge(2)
refund()
"""
    env = base_env(OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    found = []
    for _ in range(2):
        result = subprocess.run(
            [str(BIN / "python"), "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        found.append([json.loads(line)["error_fingerprint"] for line in result.stdout.splitlines()])
    return [fingerprint for run in found for fingerprint in run]


def test_error_fingerprints_are_stable_across_processes_and_tell_call_sites_apart() -> None:
    """The same error in two processes (different ids) has one fingerprint; another call site another."""
    a1, a2, b, a1_again, a2_again, b_again = _fingerprints_in_fresh_processes()
    assert a1 == a2 == a1_again == a2_again
    assert b == b_again
    assert a1 != b


def test_a_storm_of_one_error_writes_the_burst_and_one_summary() -> None:
    """10,000 identical errors in a window: LOGKIT_DEDUP_BURST lines, then one summary with the count."""
    with capture(env="prod", dedup_window=3600.0, dedup_burst=5) as captured:
        log = structlog.get_logger("shop.db")
        for attempt in range(10_000):
            log.error("database unavailable", attempt=attempt)
        log.error("another error")
        from otel_logkit.logs import chain

        chain.flush_repeated_errors()
        lines = captured.lines()
        records = captured.log_records()
    storm = [line for line in lines if line["message"] == "database unavailable"]
    assert [0, 1, 2, 3, 4] == [line["attempt"] for line in storm]
    (summary,) = [line for line in lines if line["message"] == "repeated error suppressed"]
    assert (9_995, storm[0]["error_fingerprint"], 3600.0) == (
        summary["suppressed"],
        summary["error_fingerprint"],
        summary["window_s"],
    )
    assert summary["first_timestamp"] <= summary["last_timestamp"]
    assert 1 == len([line for line in lines if line["message"] == "another error"])
    assert 5 == len([r for r in records if r.log_record.body == "database unavailable"])


def test_the_summary_comes_at_the_end_of_the_window_by_itself() -> None:
    """No further line needed: the window's end writes the summary (bounded wait)."""
    with capture(env="prod", dedup_window=0.3, dedup_burst=1) as captured:
        for _ in range(3):
            structlog.get_logger("shop").error("flaky")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            line["message"] == "repeated error suppressed" for line in captured.lines()
        ):
            time.sleep(0.05)
        (summary,) = [line for line in captured.lines() if line["message"] == "repeated error suppressed"]
    assert 2 == summary["suppressed"]
