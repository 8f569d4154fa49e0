"""Request context on Flask (test client): ids, access and error lines, streaming."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from otel_logkit import attributes
from tests.integration.apps.capture import Captured, configured
from tests.integration.apps.web_apps import make_flask_app


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured into memory (Flask instrumented, web install)."""
    yield from configured()


@pytest.fixture
def app(logkit: Captured) -> Any:
    """The test Flask app, built after configure()."""
    return make_flask_app()


def request(app: Any, method: str, path: str, **kwargs: Any) -> Any:
    """One request through Flask's test client, body read and response closed as a server would."""
    return app.test_client().open(path, method=method, buffered=True, **kwargs)


def test_access_line_has_contract_fields(app: Any, logkit: Captured) -> None:
    """One INFO access line with the URL rule and the server span's ids; the id is echoed."""
    response = request(app, "GET", "/orders/5", headers={"X-Request-ID": "flask-1", "User-Agent": "t/1"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "flask-1"
    [access] = logkit.access()
    [span] = logkit.server_spans()
    expected = {
        "level": "INFO",
        "method": "GET",
        "route": "/orders/<int:order_id>",
        "path": "/orders/5",
        "status_code": 200,
        "user_agent": "t/1",
        "request_id": "flask-1",
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
    }
    assert {key: access[key] for key in expected} == expected
    assert span.attributes[attributes.REQUEST_ID] == "flask-1"


def test_view_lines_carry_request_id(app: Any, logkit: Captured) -> None:
    """structlog and stdlib lines from the view carry the request id and the trace."""
    response = request(app, "GET", "/orders/5", headers={"X-Request-ID": "flask-2"})
    assert response.json["request_id"] == "flask-2"
    lines = {line["message"]: line for line in logkit.by_request("flask-2")}
    assert {"order read", "stdlib flask line", "request"} <= set(lines)
    assert lines["order read"]["trace_id"] == lines["request"]["trace_id"]


def test_hostile_request_id_is_replaced(app: Any, logkit: Captured) -> None:
    """An id with forbidden characters is replaced, not trusted."""
    response = request(app, "GET", "/orders/5", headers={"X-Request-ID": "evil id\u00e9"})
    echoed = response.headers["X-Request-ID"]
    assert len(echoed) == 32
    assert logkit.access()[0]["request_id"] == echoed


def test_unhandled_exception_logged_once_and_500(app: Any, logkit: Captured) -> None:
    """Flask turns the exception into its own 500; one ERROR line with a redacted body."""
    response = request(
        app,
        "POST",
        "/fail",
        json={"password": "hunter2", "card": "4111-1111-1111-1111"},
        headers={"X-Request-ID": "flask-err"},
    )
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "flask-err"
    [error] = [line for line in logkit.lines() if line["level"] == "ERROR"]
    [span] = logkit.server_spans()
    assert error["logger"] == "otel_logkit.error"
    assert error["error_type"] == "RuntimeError"
    assert "flask boom" in error["exception"]
    assert error["request_id"] == "flask-err"
    assert error["route"] == "/fail"
    assert error["trace_id"] == f"{span.context.trace_id:032x}"
    assert "hunter2" not in error["request_body"]
    assert "4111" not in error["request_body"].replace("****1111", "")
    [access] = logkit.access()
    assert (access["status_code"], access["level"]) == (500, "WARNING")


def test_exception_propagates_in_testing_mode(app: Any, logkit: Captured) -> None:
    """With TESTING on, Flask re-raises; the exception reaches the caller unchanged."""
    app.config["TESTING"] = True
    with pytest.raises(RuntimeError, match="flask boom"):
        request(app, "POST", "/fail", data=b"x")
    assert len(logkit.errors()) == 1
    assert logkit.access()[0]["status_code"] == 500


def test_http_error_is_not_an_error(app: Any, logkit: Captured) -> None:
    """abort(404) is a 404 access line, no error line."""
    assert request(app, "GET", "/missing").status_code == 404
    assert logkit.errors() == []
    assert (logkit.access()[0]["status_code"], logkit.access()[0]["level"]) == (404, "INFO")


def test_streaming_lines_and_access_after_last_chunk(app: Any, logkit: Captured) -> None:
    """Lines logged while streaming carry the id; the access line comes after the body."""
    response = app.test_client().get("/stream", headers={"X-Request-ID": "flask-stream"})
    assert response.get_data(as_text=True) == "chunk 0\nchunk 1\nchunk 2\n"
    response.close()
    messages = [line["message"] for line in logkit.by_request("flask-stream")]
    assert messages == ["flask chunk", "flask chunk", "flask chunk", "request"]


def test_concurrent_requests_never_bleed(app: Any, logkit: Captured) -> None:
    """200 requests on 16 threads with distinct ids: every line carries its own request's id."""

    def one(n: int) -> str:
        response = request(app, "GET", "/slow", headers={"X-Request-ID": f"f-{n}"})
        return str(response.json["request_id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        returned = list(pool.map(one, range(200)))
    assert returned == [f"f-{n}" for n in range(200)]
    for n in range(200):
        assert [line["message"] for line in logkit.by_request(f"f-{n}")] == ["slow done", "request"]


def test_real_werkzeug_server_concurrent_requests(app: Any, logkit: Captured) -> None:
    """A threaded werkzeug server on 127.0.0.1: 100 concurrent ids, none bleeds, one access line each."""
    import threading

    import httpx
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"

        def one(n: int) -> tuple[str, str]:
            response = httpx.get(f"{base}/slow", headers={"X-Request-ID": f"w-{n}"}, timeout=10)
            return response.headers["X-Request-ID"], str(response.json()["request_id"])

        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(one, range(100)))
        streamed = httpx.get(f"{base}/stream", headers={"X-Request-ID": "w-stream"}, timeout=10)
    finally:
        server.shutdown()
        thread.join(10)
    assert results == [(f"w-{n}", f"w-{n}") for n in range(100)]
    assert streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
    for n in range(100):
        assert [line["message"] for line in logkit.by_request(f"w-{n}")] == ["slow done", "request"]
    assert [line["message"] for line in logkit.by_request("w-stream")] == ["flask chunk"] * 3 + ["request"]
    assert [line for line in logkit.lines() if line.get("logger") == "werkzeug" and "GET /" in line["message"]] == []
