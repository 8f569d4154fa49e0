"""A Loki 3 stand-in: OTLP/HTTP protobuf at ``/otlp/v1/logs``, mapped as Loki documents it.

Loki's OTLP mapping (docs "Ingesting logs to Loki using OpenTelemetry Collector", format
considerations), with its default ``otlp_config``:
- index labels: the resource attributes in ``DEFAULT_INDEX_LABELS``, dots (and any other character
  not valid in a label name) turned into ``_``; ``service_name`` is ``unknown_service`` when absent;
- log line: the record body as a string;
- timestamp: the record's time, or its observed time when unset;
- structured metadata: every other resource attribute, the scope name/version/attributes, every
  record attribute (nested maps flattened with ``_``), ``trace_id``, ``span_id``,
  ``severity_text``, ``severity_number`` and ``flags``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from tests.e2e.backends._http import StandIn

DEFAULT_INDEX_LABELS = frozenset(
    {
        "cloud.availability_zone",
        "cloud.region",
        "container.name",
        "deployment.environment",
        "deployment.environment.name",
        "k8s.cluster.name",
        "k8s.container.name",
        "k8s.cronjob.name",
        "k8s.daemonset.name",
        "k8s.deployment.name",
        "k8s.job.name",
        "k8s.namespace.name",
        "k8s.pod.name",
        "k8s.replicaset.name",
        "k8s.statefulset.name",
        "service.instance.id",
        "service.name",
        "service.namespace",
    }
)


@dataclass(frozen=True)
class LokiEntry:
    """One stored log entry: its stream labels, line, timestamp and structured metadata."""

    labels: dict[str, str]
    line: str
    timestamp_ns: int
    metadata: dict[str, str] = field(default_factory=dict)


def label_name(key: str) -> str:
    """Loki's label-name normalisation: anything but [a-zA-Z0-9_] becomes ``_``."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return f"_{name}" if name[:1].isdigit() else name


def _raw(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}_{key}" if prefix else key, inner, out)
    else:
        out[label_name(prefix)] = _as_string(value)


class LokiStandIn(StandIn):
    """Receives OTLP logs like Loki 3 and keeps the mapped entries in ``entries``."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.entries: list[LokiEntry] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if method == "GET" and path == "/ready":
            return 200, {"Content-Type": "text/plain"}, b"ready\n"
        if method != "POST" or path.split("?", maxsplit=1)[0] != "/otlp/v1/logs":
            return 404, {"Content-Type": "text/plain"}, b"404 page not found\n"
        if "protobuf" not in headers.get("Content-Type", ""):
            return 415, {"Content-Type": "text/plain"}, b"unsupported content type\n"
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        entries = list(self._map(request))
        with self.lock:
            self.entries.extend(entries)
        return 200, {"Content-Type": "application/x-protobuf"}, ExportLogsServiceResponse().SerializeToString()

    def _map(self, request: ExportLogsServiceRequest) -> Any:
        for resource_logs in request.resource_logs:
            labels: dict[str, str] = {}
            resource_metadata: dict[str, str] = {}
            for kv in resource_logs.resource.attributes:
                if kv.key in DEFAULT_INDEX_LABELS:
                    labels[label_name(kv.key)] = _as_string(_raw(kv.value))
                else:
                    _flatten(kv.key, _raw(kv.value), resource_metadata)
            labels.setdefault("service_name", "unknown_service")
            for scope_logs in resource_logs.scope_logs:
                scope_metadata: dict[str, str] = {}
                if scope_logs.scope.name:
                    scope_metadata["scope_name"] = scope_logs.scope.name
                if scope_logs.scope.version:
                    scope_metadata["scope_version"] = scope_logs.scope.version
                for kv in scope_logs.scope.attributes:
                    _flatten(kv.key, _raw(kv.value), scope_metadata)
                for record in scope_logs.log_records:
                    yield _entry(record, labels, {**resource_metadata, **scope_metadata})


def _entry(record: LogRecord, labels: dict[str, str], metadata: dict[str, str]) -> LokiEntry:
    """One record as Loki stores it: the body as the line, the rest as structured metadata."""
    for kv in record.attributes:
        _flatten(kv.key, _raw(kv.value), metadata)
    if record.trace_id:
        metadata["trace_id"] = record.trace_id.hex()
    if record.span_id:
        metadata["span_id"] = record.span_id.hex()
    if record.severity_text:
        metadata["severity_text"] = record.severity_text
    if record.severity_number:
        metadata["severity_number"] = str(record.severity_number)
    if record.flags:
        metadata["flags"] = str(record.flags)
    return LokiEntry(
        labels=dict(labels),
        line=_as_string(_raw(record.body)),
        timestamp_ns=record.time_unix_nano or record.observed_time_unix_nano,
        metadata=metadata,
    )
