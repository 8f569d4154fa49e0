"""otel_logkit.job: span, job_id on every line, outcome lines, exceptions unchanged."""

from __future__ import annotations

import asyncio

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
