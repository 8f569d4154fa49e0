"""The SDK's exporters and otel-logkit's export pipelines, built from :class:`Settings`.

Used in the app process (the in-process path) and in the export helper; imported only where a
record is actually encoded and sent, so that an app on the helper path never imports the OTLP
exporters, ``requests`` or protobuf.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._logs import LogRecordLimits
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_logkit.config import Settings
from otel_logkit.logs.health import ExportHealth, Report, ReportingSpanExporter
from otel_logkit.logs.otlp import LogExportQueue
from otel_logkit.redact import RedactingSpanExporter, Redactor


def otlp_exporter(settings: Settings, signal_name: str) -> Any:
    """The SDK's OTLP exporter for a signal; over HTTP with otel-logkit's faster serialization."""
    logs = signal_name == "logs"
    endpoint = settings.otlp_logs_endpoint if logs else settings.otlp_traces_endpoint
    if settings.otlp_protocol != "grpc":
        from otel_logkit import wire

        return (wire.FastOTLPLogExporter if logs else wire.FastOTLPSpanExporter)(endpoint=endpoint)
    # gRPC is imported only when chosen: grpcio is slow to import.
    if logs:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def log_export_queue(
    settings: Settings,
    resource: Resource,
    exporter: LogRecordExporter | None,
    health: ExportHealth,
    report: Report,
) -> LogExportQueue:
    """The bounded OTLP log queue with its worker (the OTLP exporter unless ``exporter`` is given)."""
    if exporter is None:
        exporter = otlp_exporter(settings, "logs")

    def report_drops(count: int) -> None:
        report(
            "warning",
            "log records dropped from the OTLP export: queue full",
            {"dropped": count, "queue_size": settings.export_queue_size},
        )

    # The SDK's own limits (OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT / _VALUE_LENGTH_LIMIT, and the
    # general OTEL_ATTRIBUTE_* ones), as the SDK's LoggerProvider would apply them.
    limits = LogRecordLimits()
    return LogExportQueue(
        exporter,
        resource,
        max_queue_size=settings.export_queue_size,
        max_attributes=limits.max_attributes if limits.max_attributes is not None else 128,
        max_attribute_length=limits.max_attribute_length,
        health=health,
        report_drops=report_drops,
    )


def otlp_span_pipeline(
    settings: Settings, health: ExportHealth, redactor: Redactor, *, max_queue_size: int | None = None
) -> tuple[BatchSpanProcessor, ReportingSpanExporter]:
    """Batching (the SDK's ``OTEL_BSP_*``, ``max_queue_size`` if given), redaction, health
    reporting, then the OTLP exporter."""
    reporting = ReportingSpanExporter(otlp_exporter(settings, "traces"), health)
    exporter: SpanExporter = RedactingSpanExporter(reporting, redactor)
    return BatchSpanProcessor(exporter, max_queue_size=max_queue_size), reporting
