"""otel_logkit.job: span, job_id on every line, outcome lines, exceptions unchanged."""

from __future__ import annotations

import asyncio
import threading

import pytest
import structlog
from opentelemetry.trace import StatusCode

import otel_logkit
from otel_logkit.testing import Captured


def test_job_lines_share_job_id_and_span(captured: Captured) -> None:
    """Every line in the job carries job, job_id, and the job span's trace ids."""
    with otel_logkit.job("nightly-report", tenant="acme"):
        structlog.get_logger("app").info("rows exported", rows=3)
    started, work, finished = captured.lines()
    assert ["job started", "rows exported", "job finished"] == [x["message"] for x in (started, work, finished)]
    assert {"nightly-report"} == {x["job"] for x in (started, work, finished)}
    assert 1 == len({x["job_id"] for x in (started, work, finished)})
    assert "acme" == work["tenant"]
    (span,) = captured.spans()
    assert "job nightly-report" == span.name
    assert f"{span.context.span_id:016x}" == work["span_id"]
    assert isinstance(finished["duration_ms"], float)


def test_job_failure_logged_once_and_propagates(captured: Captured) -> None:
    """An exception is logged at ERROR with traceback, marked on the span, and re-raised as is."""
    error = RuntimeError("upstream down")
    with pytest.raises(RuntimeError) as raised, otel_logkit.job("sync"):
        raise error
    assert raised.value is error
    failed = captured.lines()[-1]
    assert ("ERROR", "RuntimeError", "job failed") == (failed["level"], failed["error_type"], failed["message"])
    assert "upstream down" in failed["exception"]
    assert StatusCode.ERROR == captured.spans()[0].status.status_code


def test_job_decorates_async_functions(captured: Captured) -> None:
    """As a decorator on a coroutine function, each call is one job; fields do not leak after."""

    @otel_logkit.job("reminders")
    async def send() -> int:
        structlog.get_logger("app").info("sent")
        return 2

    assert 2 == asyncio.run(send())
    structlog.get_logger("app").info("after")
    lines = captured.lines()
    assert "reminders" == lines[1]["job"]
    assert "job" not in lines[-1]


def test_job_finish_line_counts_processed_items(captured: Captured) -> None:
    """`processed(n)` adds up; the finish line carries the counts, both timestamps and an empty id list."""
    with otel_logkit.job("import") as run:
        run.processed()
        run.processed(n=4)
    finished = captured.lines()[-1]
    assert ("INFO", "job finished", "ok") == (finished["level"], finished["message"], finished["status"])
    assert (5, 0, []) == (finished["processed"], finished["failed"], finished["failed_ids"])
    assert finished["started_at"].endswith("Z")
    assert finished["finished_at"] >= finished["started_at"]
    assert "failed_ids_truncated" not in finished


def test_job_with_failed_items_finishes_at_error(captured: Captured) -> None:
    """A job with failed items ends with `job finished with failures` at ERROR, naming the ids."""
    with otel_logkit.job("reminders") as run:
        run.processed(n=2)
        run.failed(17)
        run.failed("order-9")
    finished = captured.lines()[-1]
    assert ("ERROR", "job finished with failures") == (finished["level"], finished["message"])
    assert (2, 2, [17, "order-9"]) == (finished["processed"], finished["failed"], finished["failed_ids"])
    assert StatusCode.ERROR == captured.spans()[0].status.status_code


def test_job_failed_with_error_logs_one_line_naming_the_item(captured: Captured) -> None:
    """`failed(item_id, error)` writes one ERROR line with the item id, error type and traceback."""
    with otel_logkit.job("reminders") as run:
        try:
            raise TimeoutError("sms gateway timed out")
        except TimeoutError as error:
            run.failed(42, error)
        run.failed(43)
    item_lines = [x for x in captured.lines() if x["message"] == "job item failed"]
    (line,) = item_lines
    assert (42, "TimeoutError", "ERROR") == (line["item_id"], line["error_type"], line["level"])
    assert "sms gateway timed out" in line["exception"]
    assert line["job"] == "reminders"


def test_job_failed_item_error_is_redacted(captured: Captured) -> None:
    """A failed item's error text goes through redaction like every other field."""
    with otel_logkit.job("reminders") as run:
        run.failed(1, "could not text +44 7700 900123 for card 4242 4242 4242 4242")
    line = next(x for x in captured.lines() if x["message"] == "job item failed")
    assert "4242 4242 4242 4242" not in line["error"]
    assert "7700 900123" not in line["error"]


def test_job_failed_ids_truncated_at_100(captured: Captured) -> None:
    """Beyond 100 failed items the ids stop at 100 and the line says `failed_ids_truncated`; the count stays exact."""
    with otel_logkit.job("bulk") as run:
        for item in range(250):
            run.failed(item)
    finished = captured.lines()[-1]
    assert 250 == finished["failed"]
    assert list(range(100)) == finished["failed_ids"]
    assert finished["failed_ids_truncated"] is True


def test_job_counts_are_exact_across_threads(captured: Captured) -> None:
    """8 threads x 1,000 items, every tenth failing: the counts are exact."""
    with otel_logkit.job("fan-out") as run:

        def work(worker: int) -> None:
            for item in range(1000):
                if item % 10 == 0:
                    run.failed(f"{worker}-{item}")
                else:
                    run.processed()

        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finished = captured.lines()[-1]
    assert (7200, 800, 100) == (finished["processed"], finished["failed"], len(finished["failed_ids"]))


def test_job_counts_concurrent_async_tasks(captured: Captured) -> None:
    """Concurrent asyncio tasks counting into one async job give exact counts."""

    async def main() -> None:
        async with otel_logkit.job("async-batch") as run:

            async def one(item: int) -> None:
                await asyncio.sleep(0)
                run.processed()

            await asyncio.gather(*(one(item) for item in range(500)))

    asyncio.run(main())
    assert 500 == captured.lines()[-1]["processed"]


def test_decorated_job_counts_through_current(captured: Captured) -> None:
    """A decorated function reaches its own run through `job.current()`; outside a job it is None."""

    @otel_logkit.job("sync-contacts")
    def sync() -> None:
        run = otel_logkit.job.current()
        assert run is not None
        run.processed(n=3)

    sync()
    assert 3 == captured.lines()[-1]["processed"]
    assert otel_logkit.job.current() is None


def test_nested_jobs_count_their_own_items(captured: Captured) -> None:
    """An inner job's items are not counted by the outer job, and `current()` returns to the outer one."""
    with otel_logkit.job("outer") as outer:
        outer.processed()
        with otel_logkit.job("inner") as inner:
            inner.processed(n=5)
            inner.failed("x")
        assert otel_logkit.job.current() is outer
    finished = {x["job"]: x for x in captured.lines() if x["message"].startswith("job finished")}
    assert (1, 0) == (finished["outer"]["processed"], finished["outer"]["failed"])
    inner_line = finished["inner"]
    assert (5, 1, ["x"]) == (inner_line["processed"], inner_line["failed"], inner_line["failed_ids"])


def test_job_exception_line_carries_the_counts(captured: Captured) -> None:
    """`job failed` (an exception) still reports what was processed before it."""

    def sync() -> None:
        with otel_logkit.job("sync") as run:
            run.processed(n=2)
            raise KeyError("missing")

    with pytest.raises(KeyError):
        sync()
    failed = captured.lines()[-1]
    assert ("job failed", 2, 0) == (failed["message"], failed["processed"], failed["failed"])


def test_decorated_job_exception_propagates_unchanged(captured: Captured) -> None:
    """The decorator re-raises the function's own exception object, with its traceback."""
    error = ValueError("bad row")

    @otel_logkit.job("load")
    def load() -> None:
        raise error

    with pytest.raises(ValueError, match="bad row") as raised:
        load()
    assert raised.value is error
    assert "load" == raised.traceback[-1].name
