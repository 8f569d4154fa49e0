"""Capture helpers for tests: run otel-logkit in-process and read back lines, spans and records.

Example::

    from otel_logkit.testing import capture

    def test_order_logged():
        with capture(env="test") as captured:
            structlog.get_logger().info("order created", order_id=7)
        assert captured.lines()[-1]["order_id"] == 7
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_logkit import setup
from otel_logkit.config import Settings


class Captured:
    """What otel-logkit wrote and exported while a :func:`capture` block ran."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.span_exporter = InMemorySpanExporter()
        self.log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]

    def text(self) -> str:
        """Everything written to the captured stdout."""
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Each stdout line, parsed as JSON (fails loudly on a line that is not JSON)."""
        # split("\n"), not splitlines(): a JSON string may hold U+0085 or U+2028 unescaped.
        return [json.loads(line) for line in self.text().split("\n") if line]

    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in end order."""
        return list(self.span_exporter.get_finished_spans())

    def log_records(self, timeout: float = 5.0) -> list[ReadableLogRecord]:
        """Exported log records, after flushing the export queue."""
        setup.force_flush(timeout)
        return list(self.log_exporter.get_finished_logs())


@contextmanager
def capture(settings: Settings | None = None, *, instrument: bool = False, **overrides: Any) -> Iterator[Captured]:
    """Configure otel-logkit with in-memory outputs for the block, then undo it.

    Args:
        settings: explicit settings (default: read from an empty environment plus ``overrides``).
        instrument: also instrument FastAPI, requests, httpx and Flask.
        overrides: ``Settings`` fields, e.g. ``env="test"``, ``service="shop"``.
    """
    setup.reset()
    captured = Captured()
    if settings is None:
        settings = Settings.from_env({}, **overrides)
        overrides = {}
    setup.configure(
        settings,
        stream=captured.stream,
        span_exporter=captured.span_exporter,
        log_exporter=captured.log_exporter,
        instrument=instrument,
        cache_loggers=False,
        **overrides,
    )
    try:
        yield captured
    finally:
        setup.force_flush(5.0)
        setup.reset()
