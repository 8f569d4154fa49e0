"""A hostile-request corpus over raw sockets, against the same app bare and instrumented: the same
status for every request, every stdout line one JSON object, no planted secret in clear."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.support.processes import BIN, OutputReader, base_env, free_port, running

CARD = "4111111111111111"
_LONG = b"a" * 10_000


def _request(path: bytes, headers: list[bytes] = (), body: bytes = b"", method: bytes = b"POST") -> bytes:  # type: ignore[assignment]
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    if body or method == b"POST":
        lines += [b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


CORPUS: dict[str, bytes] = {
    "lone-surrogate-json": _request(b"/echo-log", body=b'{"name": "\\ud800", "file": "\\udcff.txt"}'),
    "forged-level-query": _request(b"/echo-log?level=FORGED&timestamp=1999&service=evil", method=b"GET"),
    "card-in-query": _request(b"/echo-log?note=" + CARD.encode() + b"&Mobile=4155550123", method=b"GET"),
    "plus-spaced-card": _request(b"/echo-log?n=4111+1111+1111+1111", method=b"GET"),
    "invalid-json": _request(b"/echo-log", body=b'{"a": '),
    "binary-body": _request(b"/echo-log", body=bytes(range(256))),
    "nested-secrets": _request(b"/echo-log", body=json.dumps({"user": {"password": "pw-1", "card": CARD}}).encode()),
    "deep-json": _request(b"/echo-log", body=b'{"a":' * 5000 + b"1" + b"}" * 5000),
    "huge-int": _request(b"/echo-log", body=b'{"n": ' + b"9" * 4000 + b"}"),
    "quote-newline-request-id": _request(b"/ping", [b'X-Request-ID: a"b\\nc'], method=b"GET"),
    "long-request-id": _request(b"/ping", [b"X-Request-ID: " + _LONG], method=b"GET"),
    "non-utf8-request-id": _request(b"/ping", [b"X-Request-ID: \xff\xfe\xc3("], method=b"GET"),
    "non-utf8-user-agent": _request(b"/ping", [b"User-Agent: \xff\xfe" + _LONG[:100]], method=b"GET"),
    "repeated-request-ids": _request(b"/ping", [b"X-Request-ID: one", b"X-Request-ID: two"], method=b"GET"),
    "non-utf8-path": _request(b"/orders/%ff%fe", method=b"GET"),
    "email-in-path": _request(b"/sync/jane.doe%40example.com", method=b"GET"),
    "unhandled-exception": _request(b"/fail", body=json.dumps({"card": CARD}).encode()),
    "not-found": _request(b"/no/such/route", method=b"GET"),
    "bad-method": _request(b"/ping", method=b"DELETE"),
    "validation-error": _request(b"/orders", body=b'{"item": 1}'),
    "forged-traceparent": _request(b"/ping", [b"traceparent: 00-zzzz-\r\x00-01"], method=b"GET"),
}


def _status(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return 0  # the server closed the connection without an answer
            head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int, OutputReader]]:
    """The test app under bare uvicorn and under otel-logkit-instrument uvicorn."""
    bare, instrumented = free_port(), free_port()
    app = ["uvicorn", "tests.integration.apps.server_app:app", "--host", "127.0.0.1", "--no-access-log"]
    env = base_env(
        OTEL_SERVICE_NAME="hostile", LOGKIT_ENV="dev", OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none"
    )
    with ExitStack() as stack:
        # Bare, the app logs through structlog's default console printer, which fails on a lone
        # surrogate with a strict stdout: the app's own 500, not the comparison's subject.
        bare_env = base_env(PYTHONIOENCODING="utf-8:backslashreplace")
        bare_process = stack.enter_context(
            running([str(BIN / app[0]), *app[1:], "--port", str(bare)], bare_env, port=bare)
        )
        OutputReader(bare_process)  # drained, so a full pipe never stalls the bare server
        process = stack.enter_context(
            running([str(BIN / "otel-logkit-instrument"), *app, "--port", str(instrumented)], env, port=instrumented)
        )
        yield bare, instrumented, OutputReader(process)


def test_every_hostile_request_gets_the_status_it_gets_without_otel_logkit(
    servers: tuple[int, int, OutputReader],
) -> None:
    """Same status for each request of the corpus, bare and instrumented."""
    bare, instrumented, _ = servers
    differences = {
        name: (_status(bare, raw), _status(instrumented, raw))
        for name, raw in CORPUS.items()
        if _status(bare, raw) != _status(instrumented, raw)
    }
    assert {} == differences


def test_hostile_requests_never_forge_a_line_nor_leak_a_secret(servers: tuple[int, int, OutputReader]) -> None:
    """Every stdout line is one JSON object with the contract's level; no planted secret in clear."""
    _, instrumented, output = servers
    for raw in CORPUS.values():
        _status(instrumented, raw)
    _status(instrumented, _request(b"/orders/1", [b"X-Request-ID: hostile-barrier"], method=b"GET"))
    output.wait_for("hostile-barrier", timeout=20)
    text = output.text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    assert {"DEBUG", "INFO", "WARNING", "ERROR"} >= {line["level"] for line in lines}
    for secret in (CARD, "4111+1111+1111+1111", "4155550123", "pw-1", "jane.doe@example.com"):
        assert secret not in text, secret
    assert any(line.get("app_level") == "FORGED" for line in lines)
