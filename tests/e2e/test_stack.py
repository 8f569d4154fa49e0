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
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from examples.stack.processes import postgres_bindir
from tests.e2e.harness import CARD, wait_until
from tests.e2e.ops_stack import OpsStack, Span

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
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}([+-]\d\d:\d\d|Z)", line["timestamp"])
    # Whole milliseconds, the app's duration within nginx's.
    assert isinstance(line["duration_ms"], int)
    assert isinstance(line["upstream_duration_ms"], int)
    assert 0 <= line["upstream_duration_ms"] <= line["duration_ms"] < 15_000


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
    # The record's time is the line's own (milliseconds), not when the collector read it.
    logged = datetime.fromisoformat(plain_order.nginx["timestamp"])
    assert int(logged.timestamp() * 1000) == found["nginx"][0].timestamp_ns // 1_000_000
    assert found["nginx"][0].metadata["severity_text"] == "INFO"
    assert any(e.line == "order created" for e in found["shop"])
    assert any("INSERT INTO orders" in e.line for e in found["postgresql"])


def test_the_client_gets_the_request_id_header_once(stack: OpsStack) -> None:
    """nginx answers with its X-Request-ID (also on errors) and hides the app's copy."""
    assert stack.nginx is not None
    for path, expected in (("/orders/1", 404), ("/health", 200)):
        try:
            with urllib.request.urlopen(f"{stack.nginx.url}{path}", timeout=10) as response:
                status, values = response.status, response.headers.get_all("X-Request-ID")
        except urllib.error.HTTPError as error:
            status, values = error.code, error.headers.get_all("X-Request-ID")
        assert expected == status
        assert values is not None
        assert 1 == len(values)
        assert HEX32.fullmatch(values[0])


def test_a_sane_incoming_request_id_is_honoured_everywhere(stack: OpsStack) -> None:
    """A valid X-Request-ID (with ':' too) is the id in nginx, the app, the gateway, PostgreSQL and Loki."""
    request_id = "checkout-7f3a:retry.1"
    status, headers = send(stack, {"X-Request-ID": request_id})
    assert (201, request_id) == (status, headers["x-request-id"])
    seen = trail(stack, status, request_id)
    assert HEX32.fullmatch(seen.trace_id)  # nginx's own $request_id: a client id is no trace id
    assert {seen.trace_id} == {line["trace_id"] for line in seen.app}
    assert any(r.headers.get("x-request-id") == request_id for r in stack.payment.requests)
    # sqlcommenter URL-quotes the value; the filelog overlay turns it back into the id.
    postgres_entries(stack, "request_id='checkout-7f3a%3Aretry.1'")
    wait_until(
        lambda: (
            {e.labels["service_name"] for e in stack.loki_entries() if e.metadata.get("request_id") == request_id}
            >= {"nginx", "shop", "postgresql"}
        ),
        30,
        what="the id in all three sources in Loki",
    )


HOSTILE = {
    "quotes-backslash": b'X-Request-ID: a"b\\c{"x":1}',
    "too-long-for-the-rule": b"X-Request-ID: " + b"a" * 5000,
    "non-utf8": b"X-Request-ID: \xff\xfe\x80abc",
    "json-breaker": b'X-Request-ID: ","level":"ERROR',
    "spaces": b"X-Request-ID: a b",
    "empty": b"X-Request-ID: ",
}


@pytest.mark.parametrize("header", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_request_id_is_replaced_and_never_breaks_a_line(stack: OpsStack, header: bytes) -> None:
    """nginx replaces it by $request_id; its line and the app's stay valid JSON; the app never sees it."""
    assert stack.nginx is not None
    before = len(stack.nginx.access_lines())
    agent = f"hostile-{before}"
    assert 201 == send_raw(stack, [header, f"User-Agent: {agent}".encode()])
    line = wait_until(
        lambda: [x for x in stack.nginx.access_lines() if x.get("user_agent") == agent], 15, what="access line"
    )[0]  # access_lines() parses every line of the file as JSON
    assert HEX32.fullmatch(line["request_id"])
    assert line["request_id"] == line["trace_id"]
    app = trail(stack, 201, line["request_id"]).app
    assert {line["trace_id"]} == {x["trace_id"] for x in app}
    value = header.split(b": ", 1)[1]
    if value:
        assert value not in stack.app_log.read_bytes()


def test_a_header_too_large_for_nginx_still_gets_a_json_line(stack: OpsStack) -> None:
    """10 kB of X-Request-ID: nginx answers 400 itself, and its line is valid JSON with its own id."""
    assert stack.nginx is not None
    assert 400 == send_raw(stack, [b"X-Request-ID: " + b"\"'\\" * 3500, b"User-Agent: too-large"])
    lines = wait_until(
        lambda: [x for x in stack.nginx.access_lines() if x.get("status_code") == 400], 15, what="400 line"
    )
    assert HEX32.fullmatch(lines[-1]["request_id"])
    assert lines[-1]["upstream_duration_ms"] is None  # nothing was proxied


def test_a_valid_incoming_traceparent_is_continued(stack: OpsStack) -> None:
    """The caller's trace id runs through nginx's line, the app, the gateway and the SQL comments."""
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    status, headers = send(stack, {"traceparent": f"00-{trace_id}-{parent}-01", "tracestate": "vendor=abc"})
    assert 201 == status
    seen = trail(stack, status, headers["x-request-id"])
    assert trace_id == seen.trace_id == seen.nginx["traceparent"].split("-")[1]
    assert {trace_id} == {line["trace_id"] for line in seen.app}
    (call,) = [r for r in stack.payment.requests if r.headers.get("x-request-id") == seen.request_id]
    assert trace_id == call.headers["traceparent"].split("-")[1]
    assert "vendor=abc" == call.headers.get("tracestate")
    assert sql_spans(stack, trace_id)
    postgres_entries(stack, f"traceparent='00-{trace_id}-")


INVALID_TRACEPARENTS = {
    "upper-case": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    "zero-trace-id": f"00-{'0' * 32}-00f067aa0ba902b7-01",
    "zero-parent-id": f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01",
    "garbage": "hello",
    "too-short": "00-4bf92f35-00f067aa-01",
}


@pytest.mark.parametrize("traceparent", list(INVALID_TRACEPARENTS.values()), ids=list(INVALID_TRACEPARENTS))
def test_an_invalid_traceparent_is_replaced_by_one_nginx_originates(stack: OpsStack, traceparent: str) -> None:
    """nginx drops it (and its tracestate) and originates a trace whose id is the request id."""
    status, headers = send(stack, {"traceparent": traceparent, "tracestate": "vendor=stale"})
    assert 201 == status
    seen = trail(stack, status, headers["x-request-id"])
    assert seen.request_id == seen.trace_id
    assert {seen.trace_id} == {line["trace_id"] for line in seen.app}
    (call,) = [r for r in stack.payment.requests if r.headers.get("x-request-id") == seen.request_id]
    assert "tracestate" not in call.headers


def _statements(entries: list[dict[str, Any]]) -> list[str]:
    """The SQL of each execution entry, sqlcommenter comment removed."""
    found = []
    for entry in entries:
        match = re.search(r"duration: [0-9.]+ ms  (?:execute [^:]+|statement): (.*)$", entry.get("message", ""), re.S)
        if match:
            found.append(re.sub(r" /\*[^*]*\*/$", "", match.group(1)))
    return found


def test_commenter_off_sends_the_same_statements_without_a_comment(stack: OpsStack, plain_order: Trail) -> None:
    """LOGKIT_SQL_COMMENTER=false: no comment reaches PostgreSQL; statements and spans are otherwise the same."""
    from tests.e2e.ops_stack import ShopProcess

    assert stack.shop is not None
    status, headers = send(stack)  # commenter on, schema already there
    on = trail(stack, status, headers["x-request-id"])
    on_entries = postgres_entries(stack, f"request_id='{on.request_id}'")
    shop = ShopProcess(stack.tmp / "shop-off.log", {**stack.shop.env, "LOGKIT_SQL_COMMENTER": "false"})
    try:
        shop.start()
        assert 200 == urllib.request.urlopen(f"{shop.url}/products", timeout=15).status  # engine warmed up
        before = len(stack.postgres.log_entries())
        req = urllib.request.Request(
            f"{shop.url}/orders",
            data=json.dumps(ORDER).encode(),
            headers={"Content-Type": "application/json", "X-Request-ID": "commenter-off-1"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=15) as response:
            assert 201 == response.status
        lines = [json.loads(x) for x in (stack.tmp / "shop-off.log").read_text().splitlines() if x.startswith("{")]
        trace_id = next(x["trace_id"] for x in lines if x.get("request_id") == "commenter-off-1")
        off_spans = sql_spans(stack, trace_id)
        off_entries = wait_until(
            lambda: (
                (new := stack.postgres.log_entries()[before:])
                and any("INSERT INTO orders" in e["message"] for e in new)
                and new
            ),
            15,
            what="the statements in PostgreSQL's log",
        )
    finally:
        shop.stop()
    assert not [e for e in off_entries if "/*" in e["message"]]
    # BEGIN/COMMIT are the driver's own (not SQLAlchemy's statements): never commented.
    driver_own = {"BEGIN", "COMMIT", "ROLLBACK", ";"}
    assert set(_statements(on_entries)) == set(_statements(off_entries)) - driver_own
    on_spans = sql_spans(stack, on.trace_id)
    assert sorted((s.name, s.attributes["db.statement"]) for s in on_spans) == sorted(
        (s.name, s.attributes["db.statement"]) for s in off_spans
    )


@pytest.mark.parametrize(
    ("request_line", "agent", "logged"),
    [
        (b"POST /orders HTTP/1.1", b"bad-\xff\xfe-agent", {"user_agent": "(not UTF-8)"}),
        (b"POST /orders%FF%C0%22x HTTP/1.1", b"ok", {"path": "/orders%FF%C0%22x"}),
        (b"POST /orders HTTP/1.1", "caf\u00e9-agent/1.0".encode(), {"user_agent": "caf\u00e9-agent/1.0"}),
    ],
    ids=["non-utf8-user-agent", "non-utf8-path", "utf8-user-agent"],
)
def test_the_access_log_stays_valid_utf8_json(
    stack: OpsStack, request_line: bytes, agent: bytes, logged: dict[str, str]
) -> None:
    """Bytes that are not UTF-8 in the User-Agent or the decoded path are replaced; UTF-8 is kept."""
    assert stack.nginx is not None
    request_id = f"utf8-{len(stack.nginx.access_lines())}"
    body = json.dumps(ORDER).encode()
    head = [request_line, b"Host: 127.0.0.1", b"Content-Type: application/json", b"User-Agent: " + agent]
    head += [f"X-Request-ID: {request_id}".encode(), f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    with socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=15) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        while sock.recv(65536):
            pass
    line = wait_until(
        lambda: [x for x in stack.nginx.access_log.read_bytes().splitlines() if request_id.encode() in x],
        15,
        what="the access line",
    )[0]
    entry = json.loads(line.decode("utf-8"))  # strict: valid UTF-8 and valid JSON
    assert logged == {key: entry[key] for key in logged}
