"""Export health: one line when an OTLP export starts failing, one when it recovers.

The SDK exporters log every failed batch; with the collector down that is a stream of errors
(and, for logs, errors about exporting logs that are themselves logs). otel-logkit silences the
exporters' own loggers and reports the state change instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

Report = Callable[[str, str, dict[str, Any]], None]
"""Called as ``report(level, message, fields)`` to write one line."""


class ExportHealth:
    """Tracks whether exports of one signal to one endpoint are failing; reports changes once.

    Args:
        signal: ``logs`` or ``traces``.
        endpoint: where the exporter sends, for the message.
        report: writes one line (level, message, fields).
    """

    def __init__(self, signal: str, endpoint: str, report: Report) -> None:
        self.signal = signal
        self.endpoint = endpoint
        self._report = report
        self._lock = threading.Lock()
        self.failing = False
        self.failures = 0

    def failed(self, reason: str | None) -> None:
        """Record a failed export; the first failure of an outage writes one WARNING line."""
        with self._lock:
            self.failures += 1
            if self.failing:
                return
            self.failing = True
        self._report(
            "warning",
            f"OTLP {self.signal} export to {self.endpoint} is failing; "
            "stdout is unaffected, export is retried, no further message until it recovers",
            {"otlp_signal": self.signal, "otlp_endpoint": self.endpoint, "reason": reason or "export failed"},
        )

    def succeeded(self) -> None:
        """Record a successful export; the first success after an outage writes one INFO line."""
        if not self.failing:
            return
        with self._lock:
            if not self.failing:
                return
            self.failing = False
        self._report(
            "info",
            f"OTLP {self.signal} export to {self.endpoint} recovered",
            {"otlp_signal": self.signal, "otlp_endpoint": self.endpoint},
        )


class ReportingSpanExporter(SpanExporter):
    """Wraps a span exporter: results feed :class:`ExportHealth`; exceptions never escape."""

    def __init__(self, inner: SpanExporter, health: ExportHealth) -> None:
        self._inner = inner
        self._health = health

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the wrapped exporter and record the outcome."""
        try:
            result = self._inner.export(spans)
        except Exception as error:  # noqa: BLE001 - an exporter bug must not kill the batch worker
            self._health.failed(repr(error))
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._health.succeeded()
        else:
            self._health.failed(None)
        return result

    def shutdown(self) -> None:
        """Shut the wrapped exporter down (interrupting its retries)."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return self._inner.force_flush(timeout_millis)
