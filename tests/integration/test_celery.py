"""Celery under otel-logkit, in-process: task context, outcome lines, redaction, request id headers.

Tasks run eagerly (``task.apply``) or are published to kombu's in-memory transport; the real
worker with Redis and prefork children is in tests/e2e/test_celery.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from celery import Celery

from otel_logkit import context
from otel_logkit.celery import REQUEST_ID_HEADER
from otel_logkit.testing import Captured, capture

CARD = "4111 1111 1111 1111"
PHONE = "+44 7700 900123"


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured with its instrumentations (Celery included), in-memory outputs."""
    with capture(env="test", service="worker", log_level=logging.DEBUG, instrument=True) as captured:
        yield captured


@pytest.fixture
def app(logkit: Captured) -> Celery:
    """A Celery app on the in-memory transport with a working, a failing and a retrying task."""
    app = Celery("logkit_unit", broker="memory://", set_as_current=False)
    app.conf.update(task_ignore_result=True, task_store_eager_result=False)

    @app.task(name="t.work", shared=False)
    def work(order_id: int) -> int:
        structlog.get_logger("tasks").info("working", order_id=order_id)
        logging.getLogger("tasks.stdlib").info("stdlib line")
        return order_id

    @app.task(name="t.charge", shared=False)
    def charge(card_number: str, phone: str) -> None:
        raise RuntimeError("card declined")

    @app.task(name="t.flaky", bind=True, max_retries=1, shared=False)
    def flaky(self: Any) -> str:
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError("gateway unreachable"), countdown=0)
        return "ok"

    return app


def task_lines(logkit: Captured, task_name: str) -> list[dict[str, Any]]:
    """The captured lines bound to a run of ``task_name``."""
    return [line for line in logkit.lines() if line.get("task_name") == task_name]


def test_task_lines_carry_task_fields_and_span(app: Celery, logkit: Captured) -> None:
    """Every line of a run carries task_name, task_id, task_retries and the task span's ids."""
    app.tasks["t.work"].apply(args=(7,), task_id="task-1")
    lines = task_lines(logkit, "t.work")
    assert ["task started", "working", "stdlib line", "task finished"] == [x["message"] for x in lines]
    assert {("task-1", 0)} == {(x["task_id"], x["task_retries"]) for x in lines}
    (span,) = [s for s in logkit.spans() if s.name == "run/t.work"]
    assert {f"{span.context.span_id:016x}"} == {x["span_id"] for x in lines}


def test_task_finish_line_has_state_and_duration(app: Celery, logkit: Captured) -> None:
    """`task finished` is INFO with the task's state and a duration."""
    app.tasks["t.work"].apply(args=(7,))
    finished = task_lines(logkit, "t.work")[-1]
    assert ("INFO", "SUCCESS") == (finished["level"], finished["state"])
    assert isinstance(finished["duration_ms"], float)


def test_task_fields_do_not_outlive_the_run(app: Celery, logkit: Captured) -> None:
    """After the run, lines no longer carry the task's fields."""
    app.tasks["t.work"].apply(args=(7,))
    structlog.get_logger("after").info("after")
    assert "task_id" not in logkit.lines()[-1]


def test_failing_task_is_one_error_line_without_secrets(app: Celery, logkit: Captured) -> None:
    """A task exception gives exactly one ERROR line: traceback, error type, redacted arguments."""
    app.tasks["t.charge"].apply(args=(CARD, PHONE))
    errors = [x for x in logkit.lines() if x["level"] == "ERROR"]
    (error,) = errors
    assert ("task failed", "FAILURE", "RuntimeError") == (error["message"], error["state"], error["error_type"])
    assert "card declined" in error["exception"]
    assert "1111" in error["task_args"]
    assert CARD not in logkit.text()
    assert "7700 900123" not in logkit.text()


def test_celery_outcome_lines_are_replaced(app: Celery, logkit: Captured) -> None:
    """Celery's own `succeeded in` / `raised unexpected` lines (raw arguments) are not written."""
    app.tasks["t.work"].apply(args=(7,))
    app.tasks["t.charge"].apply(args=(CARD, PHONE))
    assert [] == [x for x in logkit.lines() if x["logger"] == "celery.app.trace"]


def test_pool_debug_line_with_the_raw_message_is_dropped(app: Celery, logkit: Captured) -> None:
    """The pool's `TaskPool: Apply` DEBUG line (the raw message, arguments included) is not written."""
    logging.getLogger("celery.pool").debug("TaskPool: Apply %s (args:%s kwargs:%s)", "f", (CARD,), {})
    logging.getLogger("celery.pool").debug("pool started")
    assert ["pool started"] == [x["message"] for x in logkit.lines() if x["logger"] == "celery.pool"]


def test_retry_is_one_warning_with_count_and_reason(app: Celery, logkit: Captured) -> None:
    """A retry is logged at WARNING with the retry count and the reason, then the retried run finishes."""
    app.tasks["t.flaky"].apply()
    lines = task_lines(logkit, "t.flaky")
    (retry,) = [x for x in lines if x["message"] == "task retry"]
    assert ("WARNING", 1, "RETRY", "ConnectionError") == (
        retry["level"],
        retry["retries"],
        retry["state"],
        retry["error_type"],
    )
    assert "gateway unreachable" in retry["reason"]
    finished = [x for x in lines if x["message"] == "task finished"]
    assert [1] == [x["task_retries"] for x in finished]


def test_eager_task_inside_a_request_carries_its_request_id(app: Celery, logkit: Captured) -> None:
    """A task run in-process inside a request logs that request's id."""
    token = context.request_id.set("req-eager-1")
    try:
        app.tasks["t.work"].apply(args=(1,))
    finally:
        context.request_id.reset(token)
    assert {"req-eager-1"} == {x.get("request_id") for x in task_lines(logkit, "t.work")}


def test_published_task_carries_request_id_and_traceparent(app: Celery, logkit: Captured) -> None:
    """Publishing inside a request puts its request id and the W3C traceparent in the message headers."""
    token = context.request_id.set("req-publish-1")
    try:
        app.tasks["t.work"].delay(3)
    finally:
        context.request_id.reset(token)
    with app.connection_for_read() as connection:
        message = connection.SimpleQueue("celery").get(timeout=2)
        message.ack()
    assert "req-publish-1" == message.headers[REQUEST_ID_HEADER]
    assert message.headers["traceparent"].startswith("00-")


def test_publish_outside_a_request_adds_no_request_id(app: Celery, logkit: Captured) -> None:
    """Outside a request (beat, scripts) the message carries no request id header."""
    app.tasks["t.work"].delay(3)
    with app.connection_for_read() as connection:
        message = connection.SimpleQueue("celery").get(timeout=2)
        message.ack()
    assert REQUEST_ID_HEADER not in message.headers


def test_hostile_request_id_header_is_not_trusted(app: Celery, logkit: Captured) -> None:
    """A message header that is not a sane request id is dropped, as an HTTP header would be."""
    app.tasks["t.work"].apply(args=(1,), headers={REQUEST_ID_HEADER: 'x"\n{"level":"ERROR"}'})
    assert {None} == {x.get("request_id") for x in task_lines(logkit, "t.work")}


def test_request_id_header_is_bound_in_the_task(app: Celery, logkit: Captured) -> None:
    """The request id sent in the message header is bound to every line of the task."""
    app.tasks["t.work"].apply(args=(1,), headers={REQUEST_ID_HEADER: "req-header-1"})
    assert {"req-header-1"} == {x.get("request_id") for x in task_lines(logkit, "t.work")}


def test_a_failed_task_writes_its_held_trail_and_a_successful_one_none() -> None:
    """With the request buffer in prod, a failed task writes its INFO/DEBUG trail, a successful one nothing."""
    with capture(env="prod", service="worker", instrument=True, request_buffer=logging.DEBUG) as captured:
        app = Celery("logkit_buffer", broker="memory://", set_as_current=False)
        app.conf.update(task_ignore_result=True, task_store_eager_result=False)

        @app.task(name="b.ok", shared=False)
        def ok() -> None:
            structlog.get_logger("tasks").debug("quiet detail")

        @app.task(name="b.fail", shared=False)
        def fail() -> None:
            structlog.get_logger("tasks").debug("loud detail")
            raise RuntimeError("declined")

        app.tasks["b.ok"].apply()
        app.tasks["b.fail"].apply()
        lines = captured.lines()
    held = [(line["message"], line["task_name"]) for line in lines if line.get("buffered")]
    assert ("loud detail", "b.fail") in held
    assert [] == [line for line in lines if line.get("task_name") == "b.ok"]
    assert [] == [line for line in lines if line["message"] == "quiet detail"]
