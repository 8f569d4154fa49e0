"""Request context on FastAPI in process (httpx ASGITransport): ids, access and error lines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from otel_logkit import attributes
from tests.integration.apps.capture import Captured, configured
from tests.integration.apps.web_apps import make_fastapi_app


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured into memory (redactor, FastAPI instrumentation, web install)."""
    yield from configured()


@pytest.fixture
def app(logkit: Captured) -> Any:
    """The test FastAPI app, built after configure() like an app under otel-logkit-instrument."""
    return make_fastapi_app()


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request through httpx's ASGITransport; app exceptions surface as 500s, as on a server."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("198.51.100.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(run())


def test_access_line_has_contract_fields(app: Any, logkit: Captured) -> None:
    """One INFO access line per request with the route template and the server span's ids."""
    response = call(app, "GET", "/orders/42", headers={"User-Agent": "tester/1.0"})
    assert response.status_code == 200
    [line] = logkit.access()
    [span] = logkit.server_spans()
    request_id = response.headers["X-Request-ID"]
    expected = {
        "level": "INFO",
        "method": "GET",
        "route": "/orders/{order_id}",
        "path": "/orders/42",
        "status_code": 200,
        "client_ip": "198.51.100.7",
        "user_agent": "tester/1.0",
        "request_id": request_id,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
    }
    assert expected == {key: line[key] for key in expected}
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0


def test_request_id_is_a_span_attribute(app: Any, logkit: Captured) -> None:
    """The server span carries the request id."""
    response = call(app, "GET", "/ping", headers={"X-Request-ID": "req-1"})
    [span] = logkit.server_spans()
    assert response.headers["x-request-id"] == "req-1"
    assert span.attributes[attributes.REQUEST_ID] == "req-1"


def test_handler_lines_carry_request_and_trace_ids(app: Any, logkit: Captured) -> None:
    """A line logged by the handler carries the request id and the same trace as the access line."""
    call(app, "GET", "/orders/7", headers={"X-Request-ID": "abc.DEF:1-2_3"})
    [handler_line] = [line for line in logkit.lines() if line["message"] == "order read"]
    [access] = logkit.access()
    assert handler_line["request_id"] == "abc.DEF:1-2_3"
    assert access["trace_id"] == handler_line["trace_id"]


def test_sync_endpoint_in_threadpool_carries_request_id(app: Any, logkit: Captured) -> None:
    """structlog and stdlib lines from a sync endpoint (thread pool) carry the request id."""
    response = call(app, "GET", "/sync/x", headers={"X-Request-ID": "sync-1"})
    assert response.json()["request_id"] == "sync-1"
    messages = {line["message"] for line in logkit.by_request("sync-1")}
    assert {"sync work", "stdlib sync work x", "request"} <= messages


def test_streaming_lines_and_access_after_last_chunk(app: Any, logkit: Captured) -> None:
    """Lines logged while streaming carry the id; the access line comes after the last chunk."""
    response = call(app, "GET", "/stream?chunks=3", headers={"X-Request-ID": "stream-1"})
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    lines = logkit.by_request("stream-1")
    assert [line["message"] for line in lines] == ["chunk", "chunk", "chunk", "request"]
    assert "response_incomplete" not in lines[-1]


def test_sync_streaming_body_carries_request_id(app: Any, logkit: Captured) -> None:
    """A sync generator body (iterated in the thread pool) logs with the request id."""
    call(app, "GET", "/stream-sync", headers={"X-Request-ID": "stream-2"})
    messages = [line["message"] for line in logkit.by_request("stream-2")]
    assert messages == ["sync chunk", "sync chunk", "sync chunk", "request"]


def test_background_tasks_carry_request_id(app: Any, logkit: Captured) -> None:
    """Sync and async BackgroundTasks log with the request id of the request that queued them."""
    call(app, "GET", "/background", headers={"X-Request-ID": "bg-1"})
    messages = {line["message"] for line in logkit.by_request("bg-1")}
    assert {"background sync task", "background async task", "request"} <= messages


def test_logger_injection_and_adapter(app: Any, logkit: Captured) -> None:
    """Depends(request_logger) and the stdlib adapter both write lines with the request id."""
    order = {"item": "tea", "quantity": 1}
    response = call(app, "POST", "/orders", json=order, headers={"X-Request-ID": "inj-1"})
    assert response.status_code == 200
    lines = {line["message"]: line for line in logkit.by_request("inj-1")}
    assert lines["order created"]["item"] == "tea"
    assert "adapter line" in lines


def test_concurrent_requests_never_bleed(app: Any, logkit: Captured) -> None:
    """200 concurrent requests with distinct ids: every line carries its own request's id."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await asyncio.gather(
                *(client.get("/slow?delay=0.01", headers={"X-Request-ID": f"id-{n}"}) for n in range(200))
            )

    responses = asyncio.run(run())
    assert [f"id-{n}" for n in range(200)] == [r.headers["x-request-id"] for r in responses]
    assert [f"id-{n}" for n in range(200)] == [r.json()["request_id"] for r in responses]
    for n in range(200):
        assert [line["message"] for line in logkit.by_request(f"id-{n}")] == ["slow done", "request"]
    traces = {line["trace_id"] for line in logkit.access()}
    assert len(traces) == 200


def test_unhandled_exception_one_error_line(app: Any, logkit: Captured) -> None:
    """An unhandled exception: one ERROR line with traceback, type, ids and a redacted body."""
    body = '{"user": "ann", "password": "hunter2", "card": "4242 4242 4242 4242"}'
    headers = {"Content-Type": "application/json", "X-Request-ID": "err-1"}
    response = call(app, "POST", "/fail", content=body, headers=headers)
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "err-1"
    assert "boom" not in response.text  # the framework's own 500 body, no internals
    [error] = [line for line in logkit.lines() if line["level"] == "ERROR"]
    [span] = logkit.server_spans()
    assert error["logger"] == "otel_logkit.error"
    assert error["error_type"] == "RuntimeError"
    assert "RuntimeError: boom: internal detail" in error["exception"]
    assert error["request_id"] == "err-1"
    assert f"{span.context.trace_id:032x}" == error["trace_id"]
    assert f"{span.context.span_id:016x}" == error["span_id"]
    assert "ann" in error["request_body"]
    assert "hunter2" not in logkit.stream.getvalue()
    assert "4242 4242 4242 4242" not in logkit.stream.getvalue()
    assert "4242424242424242" not in logkit.stream.getvalue()
    [access] = logkit.access()
    assert (access["status_code"], access["level"]) == (500, "WARNING")


def test_error_line_body_is_empty_when_app_never_read_it(app: Any, logkit: Captured) -> None:
    """The body is captured only as the app reads it: never read, never summarized."""
    call(app, "POST", "/fail-unread", content=b"x" * 1000, headers={"X-Request-ID": "unread"})
    [error] = logkit.errors()
    assert error["request_body"] == ""


def test_error_line_body_is_truncated(app: Any, logkit: Captured) -> None:
    """A huge body is summarized in at most LOGKIT_BODY_SUMMARY_MAX bytes plus a size note."""
    body = b'{"note": "' + b"a" * 2_000_000 + b'"}'
    call(app, "POST", "/fail", content=body, headers={"Content-Type": "application/json"})
    [error] = logkit.errors()
    assert len(error["request_body"].encode()) < 512 + 80
    assert str(len(body)) in error["request_body"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (bytes(range(256)) * 10, "application/octet-stream"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b'{"password": "hunter2", "broken": ', "application/json"),
        (b"not json at all password=hunter2", None),
    ],
    ids=["binary", "binary-claiming-json", "malformed-json", "no-content-type"],
)
def test_hostile_bodies_never_crash_or_leak(app: Any, logkit: Captured, body: bytes, content_type: str | None) -> None:
    """Binary, malformed and untyped bodies give an error line with a safe summary."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = call(app, "POST", "/fail", content=body, headers=headers)
    assert response.status_code == 500
    [error] = logkit.errors()
    assert "hunter2" not in error["request_body"]
    assert "garbage" not in error["request_body"]
    assert isinstance(error["request_body"], str)


def test_multipart_summary_is_kind_and_size(app: Any, logkit: Captured) -> None:
    """A multipart upload is summarized by kind and size, never by content."""
    files = {"file": ("secret.txt", b"password=hunter2 card 4242424242424242" * 100, "text/plain")}
    response = call(app, "POST", "/upload", files=files)
    assert response.status_code == 500
    [error] = logkit.errors()
    assert error["request_body"].startswith("[multipart/form-data, ")
    assert error["request_body"].endswith(" bytes]")
    assert "hunter2" not in logkit.stream.getvalue()


def test_http_exception_is_not_an_error(app: Any, logkit: Captured) -> None:
    """HTTPException gives an INFO access line with its status and no error line."""
    response = call(app, "GET", "/missing")
    assert response.status_code == 404
    assert logkit.errors() == []
    [access] = logkit.access()
    assert (access["status_code"], access["level"]) == (404, "INFO")


def test_validation_error_is_not_an_error(app: Any, logkit: Captured) -> None:
    """A request failing validation (422) is not an error."""
    response = call(app, "POST", "/orders", json={"item": "tea"})
    assert response.status_code == 422
    assert logkit.errors() == []
    assert logkit.access()[0]["status_code"] == 422


def test_unknown_route_has_no_template(app: Any, logkit: Captured) -> None:
    """A 404 from the router has no route template."""
    call(app, "GET", "/nowhere/at/all")
    [access] = logkit.access()
    assert (access["route"], access["path"], access["status_code"]) == (None, "/nowhere/at/all", 404)


def test_failure_after_response_started(app: Any, logkit: Captured) -> None:
    """A body that raises mid-stream: one error line, and an access line marked incomplete."""
    response = call(app, "GET", "/stream-fail", headers={"X-Request-ID": "late-1"})
    assert response.status_code == 200
    [error] = logkit.errors()
    assert (error["error_type"], error["request_id"]) == ("RuntimeError", "late-1")
    [access] = logkit.access()
    assert (access["status_code"], access["response_incomplete"]) == (200, True)


def test_request_body_consumed_by_stream_is_counted_not_kept(app: Any, logkit: Captured) -> None:
    """A large body read by the app as a stream passes through whole."""
    response = call(app, "POST", "/consume", content=b"z" * 3_000_000)
    assert response.json() == {"size": 3_000_000}


def test_request_id_travels_in_baggage(app: Any, logkit: Captured) -> None:
    """Inside the handler the propagators inject the request id as W3C baggage, with the trace."""
    response = call(app, "GET", "/outbound-headers", headers={"X-Request-ID": "bag-1"})
    carrier = response.json()
    [span] = logkit.server_spans()
    assert "request_id=bag-1" in carrier["baggage"].split(",")
    assert carrier["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"


def test_deliberate_5xx_access_line_is_error(app: Any, logkit: Captured) -> None:
    """A 5xx the app returns on purpose (no exception) is the request's one ERROR line."""
    assert call(app, "GET", "/unavailable").status_code == 503
    assert logkit.errors() == []
    [access] = logkit.access()
    assert (access["status_code"], access["level"]) == (503, "ERROR")
