"""The request context on a real uvicorn server under ``otel-logkit-instrument``, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.processes import BIN, base_env, free_port, running


@dataclass
class Server:
    """A running server and the JSON lines it has printed so far."""

    base_url: str
    port: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10.0) -> list[Any]:
        """The lines matching ``predicate`` once there are ``count`` of them; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in list(self.lines) if predicate(line)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} matching lines, not {count}, within {timeout} s")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """otel-logkit-instrument uvicorn serving the test app; stdout collected line by line."""
    port = free_port()
    command = [
        str(BIN / "otel-logkit-instrument"),
        "uvicorn",
        "tests.integration.apps.server_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = base_env(
        OTEL_SERVICE_NAME="web-test",
        LOGKIT_ENV="test",
        LOGKIT_LOG_LEVEL="INFO",
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        LOGKIT_EXCLUDED_URLS="/health$",
    )
    with running(command, env, port=port, lifetime=120) as process:
        result = Server(f"http://127.0.0.1:{port}", port)

        def read() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                result.raw.append(raw)
                try:
                    result.lines.append(json.loads(raw))
                except ValueError:
                    result.lines.append({"unparsed": raw})

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        yield result


def of(request_id: str) -> Callable[[dict[str, Any]], bool]:
    """Predicate: a line of request ``request_id``."""
    return lambda line: line.get("request_id") == request_id


def test_every_stdout_line_is_one_json_object(server: Server) -> None:
    """Whatever was served so far, stdout holds only JSON objects."""
    httpx.get(f"{server.base_url}/orders/1", timeout=10)
    server.wait_for(lambda line: line.get("path") == "/orders/1")
    assert [line for line in server.lines if "unparsed" in line] == []


def test_concurrent_requests_never_bleed(server: Server) -> None:
    """200 concurrent requests with distinct ids: each id's lines are its own, one access line each."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
            return await asyncio.gather(
                *(client.get("/slow?delay=0.02", headers={"X-Request-ID": f"uv-{n}"}) for n in range(200))
            )

    responses = asyncio.run(run())
    assert [response.json()["request_id"] for response in responses] == [f"uv-{n}" for n in range(200)]
    access = server.wait_for(lambda line: str(line.get("request_id", "")).startswith("uv-") and "route" in line, 200)
    assert len(access) == 200
    for n in range(200):
        lines = [line for line in server.lines if line.get("request_id") == f"uv-{n}"]
        assert [line["message"] for line in lines] == ["slow done", "request"]
        assert lines[0]["trace_id"] == lines[1]["trace_id"]
    assert [line for line in server.lines if line.get("logger") == "uvicorn.access"] == []


def test_streaming_and_background_tasks(server: Server) -> None:
    """A streamed body and background tasks log with the request id; one access line each."""
    response = httpx.get(f"{server.base_url}/stream?chunks=4", headers={"X-Request-ID": "uv-stream"}, timeout=10)
    assert response.text.count("chunk") == 4
    httpx.get(f"{server.base_url}/background", headers={"X-Request-ID": "uv-bg"}, timeout=10)
    stream_lines = server.wait_for(of("uv-stream"), 5)
    assert [line["message"] for line in stream_lines] == ["chunk"] * 4 + ["request"]
    background = {line["message"] for line in server.wait_for(of("uv-bg"), 3)}
    assert {"background sync task", "background async task", "request"} == background


def test_unhandled_exception_has_exactly_one_error_line(server: Server) -> None:
    """The error line replaces uvicorn's "Exception in ASGI application"; the client gets a 500."""
    start = len(server.lines)
    response = httpx.post(
        f"{server.base_url}/fail",
        json={"password": "hunter2", "card": "4242424242424242"},
        headers={"X-Request-ID": "uv-err"},
        timeout=10,
    )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "uv-err"
    # A later request's line is the barrier: uvicorn would have written its own line before it.
    httpx.get(f"{server.base_url}/orders/1", headers={"X-Request-ID": "uv-err-after"}, timeout=10)
    server.wait_for(of("uv-err-after"))
    errors = [line for line in server.lines[start:] if line.get("level") == "ERROR"]
    assert [(line["logger"], line["request_id"]) for line in errors] == [("otel_logkit.error", "uv-err")]
    assert "hunter2" not in "".join(server.raw)
    assert "4242424242424242" not in "".join(server.raw)


def test_client_disconnect_mid_stream(server: Server) -> None:
    """A client leaving mid-stream: an access line marked incomplete, and the server serves on."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /stream?chunks=200&delay=0.01 HTTP/1.1\r\nHost: x\r\nX-Request-ID: uv-gone\r\n\r\n")
        assert sock.recv(256).startswith(b"HTTP/1.1 200")
    [access] = server.wait_for(lambda line: line.get("request_id") == "uv-gone" and line.get("message") == "request")
    assert access["response_incomplete"] is True
    assert access["status_code"] == 200
    assert httpx.get(f"{server.base_url}/orders/2", timeout=10).status_code == 200


def test_excluded_health_check_has_no_access_line(server: Server) -> None:
    """LOGKIT_EXCLUDED_URLS: the health check gets no access line."""
    httpx.get(f"{server.base_url}/health", headers={"X-Request-ID": "uv-health"}, timeout=10)
    httpx.get(f"{server.base_url}/orders/3", headers={"X-Request-ID": "uv-after"}, timeout=10)
    server.wait_for(of("uv-after"))  # the health check was answered before: its line would be there
    assert [] == [line for line in server.lines if of("uv-health")(line)]
