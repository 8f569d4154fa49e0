"""Build and send OTLP/HTTP protobuf log requests, for probes that bypass the app."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def attributes(mapping: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in mapping.items()]


def logs_request(service: str, bodies: list[str], record_attributes: list[Mapping[str, Any]]) -> bytes:
    """One resource (``service.name`` = ``service``) with one record per body/attributes pair."""
    now = time.time_ns()
    records = [
        LogRecord(
            time_unix_nano=now + i,
            severity_number=9,
            severity_text="INFO",
            body=AnyValue(string_value=body),
            attributes=attributes(attrs),
        )
        for i, (body, attrs) in enumerate(zip(bodies, record_attributes, strict=True))
    ]
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=attributes({"service.name": service})),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )
    return request.SerializeToString()


def post_logs(base_url: str, payload: bytes) -> int:
    req = urllib.request.Request(
        f"{base_url}/v1/logs", data=payload, headers={"Content-Type": "application/x-protobuf"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return int(response.status)
