"""Per-log-call cost: otel-logkit's whole chain vs plain structlog JSON vs the official OTel path.

For each variant, interleaved in one run, medians over repeats:
- calling thread: CPU time of the logging thread per call (what a request handler pays);
- loop wall: wall-clock time of the calling loop per call (what the app's thread waits, export
  threads beside it under the GIL included);
- total: CPU time of the whole process per call, plus its export helper's, from the first call
  until the export is drained to a local OTLP/HTTP sink (other process).
otel-logkit runs twice: exporting through its export helper process (the default) and from its
own threads in the app (``LOGKIT_EXPORT_PROCESS=false``).
Plus a call filtered out by level. Ratios are against plain structlog with JSONRenderer.

Run: ``.venv/bin/python bench/bench_logging.py [calls] [repeats]``.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from opentelemetry.sdk.trace import TracerProvider

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class NullStream(io.TextIOBase):
    """Discards writes (a /dev/null without the syscall)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


FIELDS: dict[str, Any] = {"order_id": 1234, "amount_cents": 1290, "currency": "EUR", "user": "u-42"}
tracer = TracerProvider().get_tracer("bench")


def run_calls(log: Any, calls: int, method: str = "info") -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) for ``calls`` log calls inside a span."""
    emit = getattr(log, method)
    with tracer.start_as_current_span("request"):
        start, wall = time.thread_time(), time.perf_counter()
        for i in range(calls):
            emit("order created", i=i, **FIELDS)
        return time.thread_time() - start, time.perf_counter() - wall


_TICK = os.sysconf("SC_CLK_TCK")


def helper_cpu() -> float:
    """CPU seconds used so far by the export helper of this process (0 without one)."""
    from otel_logkit import setup

    queue = setup.log_queue()
    pid = getattr(queue, "helper_pid", None)
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def plain_structlog() -> Any:
    structlog.reset_defaults()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(NullStream()),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("bench"), lambda: None, lambda: None


def otel_logkit(endpoint: str, *, helper: bool, export: bool = True) -> Any:
    from otel_logkit import setup
    from otel_logkit.config import Settings

    setup.reset()
    structlog.reset_defaults()
    settings = Settings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_EXPORTER": "none",
            "LOGKIT_ENV": "test",
            "LOGKIT_EXPORT_QUEUE_SIZE": "10000000",
            "OTEL_SERVICE_NAME": "bench",
            "LOGKIT_EXPORT_PROCESS": "true" if helper else "false",
            "OTEL_LOGS_EXPORTER": "otlp" if export else "none",
        }
    )
    setup.configure(settings, stream=NullStream(), instrument=False)

    def drain() -> None:
        queue = setup.log_queue()
        if queue is None:
            return  # nothing exported
        assert queue.force_flush(120)
        assert queue.dropped_total == 0

    return structlog.get_logger("bench"), drain, setup.reset


def official(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    processor = BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"), max_queue_size=10_000_000, max_export_batch_size=512
    )
    provider.add_log_record_processor(processor)
    logger = logging.getLogger("bench.official")
    logger.handlers[:] = [LoggingHandler(level=logging.INFO, logger_provider=provider)]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    class Adapter:
        """stdlib logger called with the same fields (as extra=...)."""

        def info(self, message: str, **fields: Any) -> None:
            logger.info(message, extra=fields)

        def debug(self, message: str, **fields: Any) -> None:
            logger.debug(message, extra=fields)

    def drain() -> None:
        provider.force_flush(120_000)

    def close() -> None:
        provider.shutdown()
        logger.handlers[:] = []

    return Adapter(), drain, close


def measure(factory: Callable[[], Any], calls: int, method: str) -> tuple[float, float, float]:
    """(calling-thread CPU, calling-loop wall time, CPU of the process and its export helper until
    the export is drained), in seconds per call."""
    log, drain, close = factory()
    run_calls(log, 200, method)  # warm caches and connections
    drain()
    if method == "debug":
        # A filtered call costs well under a microsecond: the best of a few runs is the signal,
        # the rest is the machine's noise.
        thread_seconds = min(run_calls(log, calls, method)[0] for _ in range(5))
        close()
        return thread_seconds / calls, thread_seconds / calls, thread_seconds / calls
    process_start, helper_start = time.process_time(), helper_cpu()
    thread_seconds, wall_seconds = run_calls(log, calls, method)
    drain()
    total_seconds = time.process_time() - process_start + helper_cpu() - helper_start
    close()
    return thread_seconds / calls, wall_seconds / calls, total_seconds / calls


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_sink.py")), str(port), "900"])
    endpoint = f"http://127.0.0.1:{port}"
    time.sleep(0.5)
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    variants: dict[str, Callable[[], Any]] = {
        "plain structlog JSON": plain_structlog,
        "otel-logkit, export helper": lambda: otel_logkit(endpoint, helper=True),
        "otel-logkit, in-process export": lambda: otel_logkit(endpoint, helper=False),
        "otel-logkit, no export (the chain alone)": lambda: otel_logkit(endpoint, helper=False, export=False),
        "official (logging + SDK handler + batch + OTLP)": lambda: official(endpoint),
    }
    emitted: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    filtered: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    try:
        names = list(variants)
        for repeat in range(repeats):
            # Rotate the order so that no variant always runs first, or right after another.
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                factory = variants[name]
                emitted[name].append(measure(factory, calls, "info"))
                filtered[name].append(measure(factory, calls * 5, "debug"))
    finally:
        sink.terminate()
        sink.wait(5)

    def med(values: list[tuple[float, float, float]], index: int) -> float:
        return statistics.median(v[index] for v in values) * 1e6

    plain = emitted["plain structlog JSON"]
    base = (med(plain, 0), med(plain, 1), med(plain, 2), med(filtered["plain structlog JSON"], 0))
    print(f"{calls} calls x {repeats} repeats, interleaved; medians in us per call; ratios vs plain structlog JSON")
    header = ("variant", "thread", "ratio", "loop wall", "ratio", "total CPU", "ratio", "filtered", "ratio")
    print("{:48} {:>8} {:>6} {:>10} {:>6} {:>10} {:>6} {:>9} {:>6}".format(*header))
    for name in variants:
        values = (med(emitted[name], 0), med(emitted[name], 1), med(emitted[name], 2), med(filtered[name], 0))
        cells = " ".join(
            f"{value:{width}.2f} {value / reference:6.2f}"
            for value, reference, width in zip(values, base, (8, 10, 10, 9), strict=True)
        )
        print(f"{name:48} {cells}")


if __name__ == "__main__":
    main()
