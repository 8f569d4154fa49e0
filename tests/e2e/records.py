"""One comparable shape for a log line, whichever backend stored it.

A record is the tuple of ``FIELDS``; the app's stdout JSON line and each backend's stored form
are normalised to it, so "every line arrived exactly once" is a multiset comparison.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

FIELDS = ("timestamp", "level", "message", "logger", "service", "env", "trace_id", "span_id", "request_id")
Record = tuple[str | None, ...]


def iso_ms(nanos: int) -> str:
    """Nanoseconds since the epoch as the app prints them: ISO 8601, UTC, milliseconds, Z."""
    moment = datetime.fromtimestamp(nanos // 1_000_000 / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1_000_000 % 1000:03d}Z"


def record(**fields: Any) -> Record:
    return tuple(None if fields.get(name) in (None, "") else str(fields[name]) for name in FIELDS)


def from_stdout(line: dict[str, Any]) -> Record:
    return record(**{name: line.get(name) for name in FIELDS})


def from_loki(entry: Any) -> Record:
    meta = entry.metadata
    return record(
        timestamp=iso_ms(entry.timestamp_ns),
        level=meta.get("severity_text"),
        message=entry.line,
        logger=meta.get("logger"),
        service=entry.labels.get("service_name"),
        env=entry.labels.get("deployment_environment_name"),
        trace_id=meta.get("trace_id"),
        span_id=meta.get("span_id"),
        request_id=meta.get("request_id"),
    )


def from_cloudwatch(event: dict[str, Any]) -> Record:
    message = event["message"]
    attributes = message.get("attributes", {})
    resource = message.get("resource", {})
    return record(
        timestamp=iso_ms(event["timestamp"] * 1_000_000),
        level=message.get("severity_text"),
        message=message.get("body"),
        logger=attributes.get("logger"),
        service=resource.get("service.name"),
        env=resource.get("deployment.environment.name"),
        trace_id=message.get("trace_id"),
        span_id=message.get("span_id"),
        request_id=attributes.get("request_id"),
    )


def _es_nanos(value: Any) -> int:
    """The exporter writes ``@timestamp`` as "<epoch millis>.<nanos within the milli>"."""
    millis, _, fraction = str(value).partition(".")
    return int(millis) * 1_000_000 + int((fraction + "000000")[:6])


def from_elasticsearch(doc: dict[str, Any]) -> Record:
    attributes = doc.get("attributes", {})
    resource = doc.get("resource", {}).get("attributes", {})
    body = doc.get("body", {})
    return record(
        timestamp=iso_ms(_es_nanos(doc["@timestamp"])),
        level=doc.get("severity_text"),
        message=body.get("text") if isinstance(body, dict) else body,
        logger=attributes.get("logger"),
        service=resource.get("service.name"),
        env=resource.get("deployment.environment.name"),
        trace_id=doc.get("trace_id"),
        span_id=doc.get("span_id"),
        request_id=attributes.get("request_id"),
    )


def delivery_report(expected: list[Record], received: list[Record]) -> str:
    """Empty when ``received`` is exactly ``expected`` (as multisets), else what differs."""
    want, got = Counter(expected), Counter(received)
    missing, extra = want - got, got - want
    if not missing and not extra:
        return ""
    lines = [f"expected {len(expected)} records, received {len(received)}"]
    lines += [f"  missing x{n}: {dict(zip(FIELDS, r, strict=True))}" for r, n in list(missing.items())[:10]]
    lines += [f"  unexpected/duplicate x{n}: {dict(zip(FIELDS, r, strict=True))}" for r, n in list(extra.items())[:10]]
    return "\n".join(lines)
