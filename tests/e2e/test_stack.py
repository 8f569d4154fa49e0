"""One request id and one trace from nginx to PostgreSQL, all collected by the filelog overlay.

Real nginx, the shop under otel-logkit-instrument (SQLAlchemy on a real PostgreSQL, commenter
on), the fake payment gateway, and the collector reading the three logs into the Loki stand-in.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import CARD, wait_until
from tests.e2e.ops_stack import OpsStack, Span
from tests.e2e.servers import postgres_bindir

pytestmark = pytest.mark.e2e

ORDER = {"product_id": 2, "quantity": 1, "card": {"number": CARD, "cvv": "737"}}
HEX32 = re.compile(r"[0-9a-f]{32}")
CLIENT = 3  # SpanKind CLIENT in OTLP


def _need_servers() -> None:
    import shutil

    missing = [
        name for name, found in (("nginx", shutil.which("nginx")), ("postgresql", postgres_bindir())) if not found
    ]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed: apt-get install -y nginx postgresql (see .ci/run)")


@pytest.fixture(scope="module")
def stack(otelcol_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    """The whole stack, started once for this module."""
    _need_servers()
    ops = OpsStack(otelcol_bin, tmp_path_factory.mktemp("stack"))
    try:
        ops.start()
        yield ops
    finally:
        ops.stop()


@dataclass
class Trail:
    """What one request left behind, everywhere."""

    status: int
    request_id: str
    trace_id: str
    nginx: dict[str, Any]
    app: list[dict[str, Any]]


def send(stack: OpsStack, headers: dict[str, str] | None = None, body: Any = ORDER) -> tuple[int, dict[str, str]]:
    assert stack.nginx is not None
    req = urllib.request.Request(
        f"{stack.nginx.url}/orders",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            return int(response.status), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return int(error.code), {k.lower(): v for k, v in error.headers.items()}


def send_raw(stack: OpsStack, header_lines: list[bytes]) -> int:
    """POST /orders with header lines exactly as given (bytes nothing else would send)."""
    assert stack.nginx is not None
    body = json.dumps(ORDER).encode()
    head = [b"POST /orders HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json"]
    head += [*header_lines, f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    with socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=15) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def app_lines(stack: OpsStack, request_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stack.app_log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("request_id") == request_id]


def trail(stack: OpsStack, status: int, request_id: str) -> Trail:
    """Wait for nginx's line and the app's access line of ``request_id``."""
    assert stack.nginx is not None
    nginx_line = wait_until(
        lambda: [line for line in stack.nginx.access_lines() if line["request_id"] == request_id],
        15,
        what="nginx access line",
    )[0]
    app = wait_until(
        lambda: (
            (lines := app_lines(stack, request_id))
            and any(x["logger"] == "otel_logkit.access" for x in lines)
            and lines
        ),
        15,
        what="app access line",
    )
    return Trail(status, request_id, nginx_line["trace_id"], nginx_line, app)


def sql_spans(stack: OpsStack, trace_id: str, count: int = 2) -> list[Span]:
    def found() -> list[Span]:
        with stack.traces.lock:
            spans = [s for s in stack.traces.spans if s.trace_id == trace_id and s.kind == CLIENT]
        spans = [s for s in spans if s.attributes.get("db.system") == "postgresql" and "db.statement" in s.attributes]
        return spans if len(spans) >= count else []

    return list(wait_until(found, 20, what="SQL spans"))


def postgres_entries(stack: OpsStack, needle: str) -> list[dict[str, Any]]:
    return list(
        wait_until(
            lambda: [e for e in stack.postgres.log_entries() if needle in e.get("message", "")],
            15,
            what=f"PostgreSQL log entries with {needle}",
        )
    )


@pytest.fixture(scope="module")
def plain_order(stack: OpsStack) -> Trail:
    """One order with no X-Request-ID and no traceparent: nginx originates both."""
    status, headers = send(stack)
    assert status == 201
    return trail(stack, status, headers["x-request-id"])


def test_nginx_originates_the_request_id_and_a_trace_with_that_id(plain_order: Trail) -> None:
    """No incoming id: nginx's $request_id is the request id and the trace id of its line."""
    assert HEX32.fullmatch(plain_order.request_id)
    assert plain_order.request_id == plain_order.trace_id
    line = plain_order.nginx
    assert line["traceparent"].startswith(f"00-{plain_order.trace_id}-")
    assert line["traceparent"].endswith("-01")
    assert {"timestamp", "method", "path", "status_code", "duration_ms", "upstream_duration_ms"} <= set(line)
    assert {"client_ip", "user_agent", "service"} <= set(line)
    assert ("POST", "/orders", 201, "nginx") == (line["method"], line["path"], line["status_code"], line["service"])


def test_every_app_line_of_the_request_has_nginx_ids(plain_order: Trail) -> None:
    """The app continued nginx's trace: every line of the request has its request id and trace id."""
    assert len(plain_order.app) >= 2  # "order created" and the access line (LOGKIT_ENV=test: INFO)
    assert {plain_order.trace_id} == {line["trace_id"] for line in plain_order.app}
    assert "order created" in {line["message"] for line in plain_order.app}


def test_the_gateway_received_the_same_ids(stack: OpsStack, plain_order: Trail) -> None:
    """The payment gateway's request carried X-Request-ID and a traceparent of the same trace."""
    calls = [r for r in stack.payment.requests if r.headers.get("x-request-id") == plain_order.request_id]
    assert len(calls) == 1
    assert calls[0].headers["traceparent"].split("-")[1] == plain_order.trace_id


def test_every_sql_statement_has_a_span_of_the_trace_and_a_commented_log_entry(
    stack: OpsStack, plain_order: Trail
) -> None:
    """Each SQL span's statement reached PostgreSQL with request_id and that span's traceparent."""
    spans = sql_spans(stack, plain_order.trace_id)
    entries = postgres_entries(stack, f"request_id='{plain_order.request_id}'")
    executed = [e for e in entries if re.search(r"duration: [0-9.]+ ms  (execute|statement)", e["message"])]
    commented = {
        m.group(1)
        for e in executed
        if (m := re.search(r"traceparent='00-[0-9a-f]{32}-([0-9a-f]{16})-[0-9a-f]{2}'", e["message"]))
    }
    assert all(f"traceparent='00-{plain_order.trace_id}-" in e["message"] for e in entries)
    assert {s.span_id for s in spans} <= commented, (spans, [e["message"] for e in entries])
    # The span keeps the statement without the comment (low cardinality).
    assert all("/*" not in str(s.attributes.get("db.statement", "")) for s in spans)


def test_the_collector_finds_all_three_sources_by_request_id(stack: OpsStack, plain_order: Trail) -> None:
    """Through filelog, Loki holds nginx's, the shop's and PostgreSQL's lines of the request."""

    def by_service() -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for entry in stack.loki_entries():
            if entry.metadata.get("request_id") == plain_order.request_id:
                found.setdefault(entry.labels["service_name"], []).append(entry)
        return found if {"nginx", "shop", "postgresql"} <= set(found) else {}

    found = wait_until(by_service, 30, what="all three sources in Loki")
    for service in ("nginx", "shop", "postgresql"):
        assert {plain_order.trace_id} == {e.metadata.get("trace_id") for e in found[service]}, service
    assert found["nginx"][0].line == "POST /orders 201"
    assert found["nginx"][0].metadata["severity_text"] == "INFO"
    assert any(e.line == "order created" for e in found["shop"])
    assert any("INSERT INTO orders" in e.line for e in found["postgresql"])
