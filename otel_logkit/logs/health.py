"""Export health: one line when an OTLP export starts failing, one when it recovers.

The SDK exporters log every failed batch; with the collector down that is a stream of errors
(and, for logs, errors about exporting logs that are themselves logs). otel-logkit silences the
exporters' own loggers and reports the state change instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_logkit import _fork

Report = Callable[[str, str, dict[str, Any]], None]
"""Called as ``report(level, message, fields)`` to write one line."""


def report_line(level: str, message: str, fields: dict[str, Any]) -> None:
    """The :data:`Report` of otel-logkit's own lines: one line of the ``otel_logkit`` logger."""
    import structlog

    getattr(structlog.get_logger("otel_logkit"), level)(message, **fields)


class ExportHealth:
    """Tracks whether OTLP exports are failing, per signal; reports state changes once.

    One line when the first signal starts failing, one when every signal has recovered: with the
    collector down there is a single WARNING for logs and traces together.

    Args:
        endpoint: where the exporters send, for the message.
        report: writes one line (level, message, fields).
    """

    def __init__(self, endpoint: str, report: Report) -> None:
        self.endpoint = endpoint
        self._report = report
        self._lock = threading.Lock()
        self._failing: set[str] = set()
        self.failures = 0

    def is_failing(self, signal: str | None = None) -> bool:
        """Whether ``signal`` (or any signal) is failing now."""
        return bool(self._failing) if signal is None else signal in self._failing

    def failed(self, signal: str, reason: str | None) -> None:
        """Record a failed export; the first failure of an outage writes one WARNING line."""
        with self._lock:
            self.failures += 1
            first = not self._failing
            self._failing.add(signal)
        if first:
            self._report(
                "warning",
                f"OTLP export to {self.endpoint} is failing; stdout is unaffected, export is retried, "
                "no further message until it recovers",
                {"otlp_signal": signal, "otlp_endpoint": self.endpoint, "reason": reason or "export failed"},
            )

    def succeeded(self, signal: str) -> None:
        """Record a successful export; the last signal to recover writes one INFO line."""
        if signal not in self._failing:
            return
        with self._lock:
            if signal not in self._failing:
                return
            self._failing.discard(signal)
            recovered = not self._failing
        if recovered:
            self._report(
                "info",
                f"OTLP export to {self.endpoint} recovered",
                {"otlp_signal": signal, "otlp_endpoint": self.endpoint},
            )


class ReportingSpanExporter(SpanExporter):
    """Wraps a span exporter: results feed :class:`ExportHealth`; exceptions never escape."""

    def __init__(self, inner: SpanExporter, health: ExportHealth) -> None:
        self._inner = inner
        self._health = health
        self.exported = 0
        """Spans the exporter accepted."""
        self.settled = 0
        """Spans done with: accepted or refused."""
        _fork.after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        # A forked worker must not send on the parent's keep-alive sockets.
        _fork.renew_http_session(self._inner)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the wrapped exporter and record the outcome."""
        try:
            with suppress_instrumentation():
                result = self._inner.export(spans)
        except Exception as error:  # noqa: BLE001 - an exporter bug must not kill the batch worker
            self.settled += len(spans)
            self._health.failed("traces", repr(error))
            return SpanExportResult.FAILURE
        self.settled += len(spans)
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
            self._health.succeeded("traces")
        else:
            self._health.failed("traces", None)
        return result

    @property
    def failing(self) -> bool:
        """Whether the last export failed."""
        return self._health.is_failing("traces")

    def shutdown(self) -> None:
        """Shut the wrapped exporter down (interrupting its retries)."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return self._inner.force_flush(timeout_millis)
