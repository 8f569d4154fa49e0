"""Hostile and unusual input on the ASGI middleware, driven with raw ASGI messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from otel_logkit import _failsafe
from otel_logkit.web import RequestContextMiddleware
from otel_logkit.web.asgi import STATE_KEY
from tests.integration.apps.capture import Captured, configured
from tests.integration.apps.web_apps import make_fastapi_app


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured into memory, health checks excluded, 10.0.0.0/8 trusted."""
    yield from configured(excluded_urls=("/health$",), trusted_proxies=_networks("10.0.0.0/8"))


def _networks(*cidrs: str) -> tuple[Any, ...]:
    import ipaddress

    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


@pytest.fixture
def app(logkit: Captured) -> Any:
    """The test FastAPI app."""
    return make_fastapi_app()


def http_scope(
    path: str,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] = ("192.0.2.1", 1),
    method: str = "GET",
) -> Any:
    """A minimal HTTP scope as a server would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": ("127.0.0.1", 80),
    }


def run_raw(app: Any, scope: Any, body: bytes = b"") -> list[dict[str, Any]]:
    """Drive one request; return the messages the app sent."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}  # the client is gone once its body is read

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def response_header(sent: list[dict[str, Any]], name: bytes) -> list[bytes]:
    """Every value of response header ``name``."""
    [start] = [message for message in sent if message["type"] == "http.response.start"]
    return [value for key, value in start["headers"] if key.lower() == name]


@pytest.mark.parametrize(
    "values",
    [
        [b""],
        [b"a" * 129],
        [b"has space"],
        [b"line\r\nbreak"],
        [b'quote"{}'],
        [b"\xff\xfe\xfd"],
        ["caf\u00e9".encode()],
        [b"one", b"two"],
    ],
    ids=["empty", "too-long", "space", "crlf", "json-chars", "not-utf8", "non-ascii", "repeated-different"],
)
def test_hostile_request_id_is_replaced(app: Any, logkit: Captured, values: list[bytes]) -> None:
    """An unusable incoming request id is replaced by a generated one, echoed and logged."""
    sent = run_raw(app, http_scope("/ping", [(b"x-request-id", value) for value in values]))
    [echoed] = response_header(sent, b"x-request-id")
    [access] = logkit.access()
    assert len(echoed) == 32
    assert echoed.decode() == access["request_id"]
    assert all(value != echoed for value in values)


def test_repeated_identical_request_id_is_kept(app: Any, logkit: Captured) -> None:
    """The same id sent twice (a proxy repeating it) is honoured."""
    sent = run_raw(app, http_scope("/ping", [(b"x-request-id", b"same-1"), (b"X-Request-Id", b"same-1")]))
    assert response_header(sent, b"x-request-id") == [b"same-1"]


def test_longest_sane_request_id_is_kept(app: Any, logkit: Captured) -> None:
    """128 characters of the allowed alphabet are honoured."""
    value = b"a1.b2:c3-d4_" * 10 + b"abcdefgh"
    sent = run_raw(app, http_scope("/ping", [(b"x-request-id", value)]))
    assert [value] == response_header(sent, b"x-request-id")


def test_crlf_in_user_agent_cannot_forge_a_line(app: Any, logkit: Captured) -> None:
    """CR/LF and JSON in headers stay inside the one JSON line."""
    forged = b'x\r\n{"level": "ERROR", "message": "forged"}\n'
    run_raw(app, http_scope("/ping", [(b"user-agent", forged)]))
    raw_lines = logkit.stream.getvalue().splitlines()
    assert all(json.loads(line) for line in raw_lines)
    assert [line for line in logkit.lines() if line["message"] == "forged"] == []
    [access] = logkit.access()
    assert forged.decode() == access["user_agent"]


def test_oversized_user_agent_is_cut(app: Any, logkit: Captured) -> None:
    """A 100 kB User-Agent is kept to 512 characters."""
    run_raw(app, http_scope("/ping", [(b"user-agent", b"u" * 100_000)]))
    assert len(logkit.access()[0]["user_agent"]) == 512


def test_excluded_url_has_no_access_line(app: Any, logkit: Captured) -> None:
    """LOGKIT_EXCLUDED_URLS: no access line, the id is still echoed."""
    sent = run_raw(app, http_scope("/health", []))
    assert logkit.access() == []
    assert len(response_header(sent, b"x-request-id")) == 1


def test_forwarded_for_from_untrusted_peer_is_ignored(app: Any, logkit: Captured) -> None:
    """X-Forwarded-For from a peer that is not a trusted proxy is not believed."""
    run_raw(app, http_scope("/ping", [(b"x-forwarded-for", b"1.2.3.4")], client=("203.0.113.9", 1)))
    assert logkit.access()[0]["client_ip"] == "203.0.113.9"


def test_forwarded_for_from_trusted_proxy(app: Any, logkit: Captured) -> None:
    """Behind a trusted proxy, the right-most untrusted hop is the client."""
    headers = [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.2"), (b"x-forwarded-for", b"10.1.1.1")]
    run_raw(app, http_scope("/ping", headers, client=("10.0.0.5", 1)))
    assert logkit.access()[0]["client_ip"] == "198.51.100.2"


def test_app_sees_scope_and_headers_unchanged(logkit: Captured) -> None:
    """The wrapped app gets the server's headers as they were, plus only the state extension."""
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 204, "headers": [(b"x-app", b"1")]})
        await send({"type": "http.response.body", "body": b""})

    headers = [(b"x-request-id", b"bad id")]
    sent = run_raw(RequestContextMiddleware(inner), http_scope("/x", list(headers)))
    assert [headers] == seen
    [start] = [message for message in sent if message["type"] == "http.response.start"]
    assert start["headers"][0] == (b"x-app", b"1")


def test_app_set_request_id_header_is_not_duplicated(logkit: Captured) -> None:
    """If the app sets the header itself, the middleware adds no second one."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"X-Request-ID", b"mine")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sent = run_raw(RequestContextMiddleware(inner), http_scope("/x", []))
    assert response_header(sent, b"x-request-id") == [b"mine"]


def test_lifespan_and_websocket_pass_through(app: Any, logkit: Captured) -> None:
    """Lifespan and websocket scopes reach the app untouched: no id, no header, no access line."""

    async def run() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        lifespan = [{"type": "lifespan.startup"}]

        async def lifespan_receive() -> dict[str, Any]:
            return lifespan.pop(0) if lifespan else {"type": "lifespan.shutdown"}

        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, lifespan_receive, send)
        incoming = [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "hi"},
            {"type": "websocket.disconnect", "code": 1000},
        ]

        async def ws_receive() -> dict[str, Any]:
            return incoming.pop(0)

        scope = {**http_scope("/ws", [(b"x-request-id", b"ws-1")]), "type": "websocket", "subprotocols": []}
        await app(scope, ws_receive, send)
        assert STATE_KEY not in scope
        return sent

    sent = asyncio.run(run())
    kinds = [message["type"] for message in sent]
    assert kinds == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    accept = sent[2]
    assert all(name.lower() != b"x-request-id" for name, _ in accept.get("headers") or [])
    assert sent[3]["text"] == "echo hi"
    assert logkit.access() == []


def test_non_http_scope_is_passed_as_is(logkit: Captured) -> None:
    """A non-HTTP scope object is handed to the app unchanged (no state key, same object)."""
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    asyncio.run(RequestContextMiddleware(inner)(scope, None, None))  # type: ignore[arg-type]
    assert [scope] == seen
    assert STATE_KEY not in scope


def test_telemetry_failure_is_contained(app: Any, logkit: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing access line is reported once and never reaches the app or the client."""
    monkeypatch.setattr(_failsafe, "raise_errors", False)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("telemetry bug")

    # Only the access line's own code fails (its duration rounding), nothing else in the process.
    monkeypatch.setattr("otel_logkit.web._core.round", broken, raising=False)
    for _ in range(2):
        sent = run_raw(app, http_scope("/ping", []))
        assert next(m for m in sent if m["type"] == "http.response.start")["status"] == 200
    reports = [line for line in logkit.lines() if line["message"].startswith("otel-logkit failed in")]
    assert 1 == len(reports)
    assert "access line" in reports[0]["message"]
    assert [] == logkit.access()


def test_telemetry_failure_surfaces_under_the_test_switch(
    app: Any, logkit: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With otel-logkit's test switch on, the same failure is re-raised, so bugs cannot hide in tests."""
    monkeypatch.setattr(_failsafe, "raise_errors", True)

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr("otel_logkit.web.body.BodyCapture.feed", broken)
    with pytest.raises(RuntimeError, match="telemetry bug"):
        run_raw(app, http_scope("/consume", [], method="POST"), body=b"x")


def test_custom_request_id_header() -> None:
    """LOGKIT_REQUEST_ID_HEADER renames the header read, echoed and logged."""
    with contextlib.contextmanager(configured)(request_id_header="X-Correlation-ID") as captured:
        app = make_fastapi_app()
        sent = run_raw(app, http_scope("/ping", [(b"x-correlation-id", b"corr-1"), (b"x-request-id", b"other")]))
        assert response_header(sent, b"x-correlation-id") == [b"corr-1"]
        assert response_header(sent, b"x-request-id") == []
        assert [line["request_id"] for line in captured.access()] == ["corr-1"]


def test_client_gone_before_the_response_is_not_a_5xx_error(logkit: Captured) -> None:
    """A client that leaves before any response starts gives an INFO access line with status 499."""

    async def waits_for_the_client(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass  # the app sees the disconnect and returns without answering

    async def cancelled(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    run_raw(RequestContextMiddleware(waits_for_the_client), http_scope("/slow", []))
    with pytest.raises(asyncio.CancelledError):
        run_raw(RequestContextMiddleware(cancelled), http_scope("/slow", []))
    access = logkit.access()
    assert [(499, "INFO", True), (499, "INFO", True)] == [
        (line["status_code"], line["level"], line["response_incomplete"]) for line in access
    ]
