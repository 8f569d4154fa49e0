"""A Celery app for the tests: a no-op task, a logging task, a failing task with secrets in its
arguments, and a task that retries once. The broker is ``CELERY_BROKER_URL`` (a test Redis)."""

from __future__ import annotations

import logging
import os
import time

import structlog
from celery import Celery

app = Celery("logkit_tests", broker=os.environ.get("CELERY_BROKER_URL", "memory://"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
)

log = structlog.get_logger("tests.tasks")
stdlib_log = logging.getLogger("tests.tasks.stdlib")


@app.task(name="tests.noop")
def noop() -> None:
    """Do nothing (the benchmark's task)."""


@app.task(name="tests.work")
def work(order_id: int) -> int:
    """Log through structlog and stdlib logging."""
    log.info("working on order", order_id=order_id)
    stdlib_log.info("stdlib line for order %s", order_id)
    return order_id


@app.task(name="tests.charge")
def charge(card_number: str, phone: str, amount: int) -> None:
    """Fail, with a card number and a phone number among the arguments."""
    raise RuntimeError(f"charge declined for amount {amount}")


@app.task(name="tests.flaky", bind=True, max_retries=2, default_retry_delay=0)
def flaky(self: object, attempts_before_success: int = 1) -> str:
    """Retry until ``attempts_before_success`` retries were made, then succeed."""
    retries = self.request.retries  # type: ignore[attr-defined]
    if retries < attempts_before_success:
        raise self.retry(exc=ConnectionError("sms gateway unreachable"), countdown=0)  # type: ignore[attr-defined]
    return "sent"


@app.task(name="tests.sleepy")
def sleepy(seconds: float) -> None:
    """Log a line, then sleep (a task still running when a pool child is signalled)."""
    log.info("sleeping", seconds=seconds)
    time.sleep(seconds)
