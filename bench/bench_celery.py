"""Celery task throughput: a no-op task, prefork pool with 2 children, over a local Redis.

Variants (same app, broker and OTLP sink): bare ``celery worker``, the official
``opentelemetry-instrument`` (opentelemetry-distro, contrib Celery instrumentation, traces
exported) and ``otel-logkit-instrument`` (LOGKIT_ENV=test: INFO lines per task, logs and traces
exported; and LOGKIT_ENV=prod: WARNING). For each round and variant, ``--tasks`` tasks are queued
first, then the worker is started; the rate is measured between the 100th and the last task
done. CPU per task (worker and pool children, user + system, from the rusage of the reaped
processes) is the difference between a run of ``--tasks`` and a run of 100 tasks, divided by the
difference in tasks: start-up and shutdown cancel out, and unlike the rate it barely moves with
the load of a shared machine. Worker output goes to /dev/null.
Run: ``.venv/bin/python bench/bench_celery.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_http import OFFICIAL_SITE, ensure_official_distro, free_port  # noqa: E402

from tests.support.redis_server import redis_server  # noqa: E402

WARMUP = 100


@dataclass
class Variant:
    """One way of running the worker."""

    name: str
    prefix: list[str]
    env: dict[str, str]


def variants(broker: str, sink: str) -> list[Variant]:
    """bare, official and otel-logkit (test and prod levels) on the same broker and sink."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGKIT_", "PYTEST_", "PYTHONPATH"))}
    base.update(
        BENCH_BROKER_URL=broker,
        OTEL_SERVICE_NAME="bench-worker",
        OTEL_EXPORTER_OTLP_ENDPOINT=sink,
        PYTHONPATH=str(ROOT / "bench"),
        C_FORCE_ROOT="1",
    )
    official = {
        **base,
        "PYTHONPATH": f"{OFFICIAL_SITE}:{ROOT / 'bench'}",
        "OTEL_PYTHON_DISTRO": "distro",
        "OTEL_PYTHON_CONFIGURATOR": "configurator",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    logkit = [str(BIN / "otel-logkit-instrument")]
    return [
        Variant("bare celery", [], base),
        Variant("opentelemetry-instrument", [str(BIN / "opentelemetry-instrument")], official),
        Variant("otel-logkit-instrument, LOGKIT_ENV=test (INFO)", logkit, {**base, "LOGKIT_ENV": "test"}),
        Variant("otel-logkit-instrument, LOGKIT_ENV=prod (WARNING)", logkit, {**base, "LOGKIT_ENV": "prod"}),
    ]


def enqueue(broker: str, count: int) -> None:
    """Reset the counter and queue ``count`` tasks (not measured)."""
    import redis

    os.environ["BENCH_BROKER_URL"] = broker
    from celery_tasks import COUNTER, noop

    redis.Redis.from_url(broker).flushdb()
    redis.Redis.from_url(broker).delete(COUNTER)
    with noop.app.producer_or_acquire() as producer:
        for _ in range(count):
            noop.apply_async(producer=producer)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(variant: Variant, broker: str, count: int, timeout: float) -> tuple[float, float]:
    """Start the worker on a full queue of ``count`` tasks; return (tasks per second between
    WARMUP and ``count`` done, CPU seconds of the worker and its children until it exited)."""
    import redis
    from celery_tasks import COUNTER

    client = redis.Redis.from_url(broker)
    command = [
        *variant.prefix,
        str(BIN / "celery"),
        *("-A", "celery_tasks", "worker", "--pool", "prefork", "--concurrency", "2"),
        *("--without-mingle", "--without-gossip", "--without-heartbeat"),
    ]
    cpu_before = _children_cpu()
    rate = 0.0
    process = subprocess.Popen(
        command, env=variant.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        started = 0.0
        while time.monotonic() < deadline:
            done = int(client.get(COUNTER) or 0)
            if not started and done >= min(WARMUP, count):
                started, first = time.perf_counter(), done
            if done >= count:
                rate = (done - first) / max(time.perf_counter() - started, 1e-9)
                break
            time.sleep(0.02)
        else:
            raise TimeoutError(f"{variant.name}: {client.get(COUNTER)} of {count} tasks in {timeout}s")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    return rate, _children_cpu() - cpu_before


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Interleave the variants over ``--rounds`` rounds and print medians and ratios to bare Celery."""
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    ensure_official_distro()
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_sink.py"), str(sink_port), "3600"])
    try:
        with redis_server() as broker:
            chosen = variants(broker, f"http://127.0.0.1:{sink_port}")
            rates: dict[str, list[float]] = {v.name: [] for v in chosen}
            cpus: dict[str, list[float]] = {v.name: [] for v in chosen}
            for round_ in range(args.rounds):
                for variant in chosen:
                    enqueue(broker, WARMUP)
                    _, base_cpu = run(variant, broker, WARMUP, args.timeout)
                    enqueue(broker, args.tasks)
                    rate, cpu = run(variant, broker, args.tasks, args.timeout)
                    per_task = (cpu - base_cpu) / (args.tasks - WARMUP) * 1e6
                    rates[variant.name].append(rate)
                    cpus[variant.name].append(per_task)
                    print(
                        f"round {round_ + 1} {variant.name}: {rate:.0f} tasks/s, {per_task:.0f} µs CPU/task", flush=True
                    )
    finally:
        sink.terminate()
        sink.wait(10)
    bare = statistics.median(rates[chosen[0].name])
    bare_cpu = statistics.median(cpus[chosen[0].name])
    print(
        f"\n| variant (medians of {args.rounds}) | tasks/s | ratio | CPU µs/task | ratio |\n|---|---:|---:|---:|---:|"
    )
    for variant in chosen:
        median = statistics.median(rates[variant.name])
        cpu = statistics.median(cpus[variant.name])
        print(f"| {variant.name} | {median:.0f} | {median / bare:.2f} | {cpu:.0f} | {cpu / bare_cpu:.2f} |")


if __name__ == "__main__":
    main()
