"""Per-log-call cost: otel-logkit's whole chain vs plain structlog JSON vs the official OTel path.

For each variant, interleaved in one run, medians over repeats:
- calling thread: CPU time of the logging thread per call (what a request handler pays);
- total: CPU time of the whole process per call, from the first call until the export queue is
  drained to a local OTLP/HTTP sink (other process) — the export worker's work included.
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


def run_calls(log: Any, calls: int, method: str = "info") -> float:
    """Thread CPU seconds for ``calls`` log calls inside a span."""
    emit = getattr(log, method)
    with tracer.start_as_current_span("request"):
        start = time.thread_time()
        for i in range(calls):
            emit("order created", i=i, **FIELDS)
        return time.thread_time() - start


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


def otel_logkit(endpoint: str) -> Any:
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
        }
    )
    setup.configure(settings, stream=NullStream(), instrument=False)

    def drain() -> None:
        queue = setup.log_queue()
        assert queue is not None
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


def measure(factory: Callable[[], Any], calls: int, method: str) -> tuple[float, float]:
    """(calling-thread seconds per call, process seconds per call incl. export)."""
    log, drain, close = factory()
    run_calls(log, 200, method)  # warm caches and connections
    drain()
    if method == "debug":
        # A filtered call costs well under a microsecond: the best of a few runs is the signal,
        # the rest is the machine's noise.
        thread_seconds = min(run_calls(log, calls, method) for _ in range(5))
        close()
        return thread_seconds / calls, thread_seconds / calls
    process_start = time.process_time()
    thread_seconds = run_calls(log, calls, method)
    drain()
    total_seconds = time.process_time() - process_start
    close()
    return thread_seconds / calls, total_seconds / calls


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
        "otel-logkit chain": lambda: otel_logkit(endpoint),
        "official (logging + SDK handler + batch + OTLP)": lambda: official(endpoint),
    }
    emitted: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    filtered: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
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

    def med(values: list[tuple[float, float]], index: int) -> float:
        return statistics.median(v[index] for v in values)

    base_thread, base_total = med(emitted["plain structlog JSON"], 0), med(emitted["plain structlog JSON"], 1)
    base_filtered = med(filtered["plain structlog JSON"], 0)
    print(f"{calls} calls x {repeats} repeats, interleaved; medians; ratios vs plain structlog JSON")
    header = ("variant", "thread us", "ratio", "total us", "ratio", "filtered us", "ratio")
    print("{:50} {:>10} {:>6} {:>10} {:>6} {:>12} {:>6}".format(*header))
    for name in variants:
        thread_us, total_us = med(emitted[name], 0) * 1e6, med(emitted[name], 1) * 1e6
        filtered_us = med(filtered[name], 0) * 1e6
        print(
            f"{name:50} {thread_us:10.2f} {thread_us / (base_thread * 1e6):6.2f} {total_us:10.2f} "
            f"{total_us / (base_total * 1e6):6.2f} {filtered_us:12.3f} {filtered_us / (base_filtered * 1e6):6.2f}"
        )


if __name__ == "__main__":
    main()
