"""The benchmark's Celery app: one no-op task that only counts itself (a Redis INCR).

The counter is how bench_celery.py sees progress without a result backend; every variant pays it.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
COUNTER = "bench:done"

app = Celery("bench", broker=BROKER)
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True, worker_prefetch_multiplier=16)
_redis: redis.Redis | None = None


@app.task(name="bench.noop")
def noop() -> None:
    """Count one run."""
    global _redis  # noqa: PLW0603 - one client per pool process
    if _redis is None:
        _redis = redis.Redis.from_url(BROKER)
    _redis.incr(COUNTER)
