"""An OTLP/HTTP receiver for tests: decodes protobuf logs and traces sent to 127.0.0.1."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(value: AnyValue) -> Any:
    """Decode an OTLP AnyValue into a Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    return getattr(value, kind)


@dataclass
class ReceivedLog:
    """One decoded LogRecord with its resource attributes."""

    body: Any
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    time_unix_nano: int


@dataclass
class ReceivedSpan:
    """One decoded span."""

    name: str
    trace_id: str
    span_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


class OTLPReceiver:
    """Keeps what arrives at /v1/logs and /v1/traces."""

    def __init__(self) -> None:
        self.logs: list[ReceivedLog] = []
        self.spans: list[ReceivedSpan] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43123``."""
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, path: str, body: bytes) -> int:
        """Decode one request; return the HTTP status."""
        with self._lock:
            self.raw.append(body)
            if path == "/v1/logs":
                request = ExportLogsServiceRequest.FromString(body)
                for resource_logs in request.resource_logs:
                    resource = {kv.key: any_value(kv.value) for kv in resource_logs.resource.attributes}
                    for scope_logs in resource_logs.scope_logs:
                        for record in scope_logs.log_records:
                            self.logs.append(
                                ReceivedLog(
                                    body=any_value(record.body),
                                    severity_text=record.severity_text,
                                    severity_number=record.severity_number,
                                    trace_id=record.trace_id.hex(),
                                    span_id=record.span_id.hex(),
                                    attributes={kv.key: any_value(kv.value) for kv in record.attributes},
                                    resource=resource,
                                    time_unix_nano=record.time_unix_nano,
                                )
                            )
                return 200
            if path == "/v1/traces":
                request_t = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request_t.resource_spans:
                    resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            self.spans.append(
                                ReceivedSpan(
                                    name=span.name,
                                    trace_id=span.trace_id.hex(),
                                    span_id=span.span_id.hex(),
                                    kind=span.kind,
                                    attributes={kv.key: any_value(kv.value) for kv in span.attributes},
                                    resource=resource,
                                )
                            )
                return 200
        return 404

    def wait_for(self, predicate: Callable[[OTLPReceiver], bool], timeout: float = 10.0) -> bool:
        """Poll until ``predicate(self)`` holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        return False


@contextmanager
def otlp_receiver(port: int = 0) -> Iterator[OTLPReceiver]:
    """Run an OTLPReceiver on 127.0.0.1 for the duration of the block."""
    receiver = OTLPReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            status = receiver.handle(self.path, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
