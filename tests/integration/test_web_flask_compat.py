"""Flask behaves exactly as without otel-logkit: regressions found by running Flask's own suite.

Each test names the Flask suite's test (or the review finding) it stands for.
"""

from __future__ import annotations

import gc
import logging
import sys
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import otel_logkit
from otel_logkit import attributes as attributes_module
from otel_logkit import setup
from tests.integration.apps.capture import Captured, configured
from tests.integration.apps.web_apps import make_flask_app


@pytest.fixture
def logkit() -> Iterator[Captured]:
    """otel-logkit configured into memory (Flask spans, web install)."""
    yield from configured()


@pytest.fixture
def app(logkit: Captured) -> Any:
    """The test Flask app, built after configure()."""
    return make_flask_app()


class _Records(logging.Handler):
    """A handler the app itself puts on ``app.logger`` (as mail-on-error or Sentry would)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_flask_class_is_not_replaced(logkit: Captured) -> None:
    """flask.Flask stays Flask's own class (no _InstrumentedFlask subclass)."""
    import flask
    import flask.app

    assert flask.Flask is flask.app.Flask
    assert type(flask.Flask("t")) is flask.app.Flask


def test_app_freed_on_zero_refcount(app: Any, logkit: Captured) -> None:
    """Flask's test_app_freed_on_zero_refcount: an app that served a request dies with its last reference."""
    from flask import Flask

    assert app.test_client().get("/orders/1").status_code == 200
    gc.collect()
    gc.disable()
    try:
        fresh = Flask("freed")
        fresh.add_url_rule("/x", "x", lambda: "ok")
        assert fresh.test_client().get("/x").status_code == 200
        ref = weakref.ref(fresh)
        del fresh
        assert ref() is None
    finally:
        gc.enable()


def test_log_exception_takes_flask_32_arguments(logkit: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flask 3.2 calls log_exception(ctx, exc_info): otel-logkit leaves the method as Flask defines it."""
    from flask import Flask

    from otel_logkit import web

    calls: list[tuple[Any, ...]] = []

    def log_exception_32(self: Any, ctx: Any, exc_info: Any) -> None:
        calls.append((ctx, exc_info))

    monkeypatch.setattr(Flask, "log_exception", log_exception_32)
    web.install(setup.current_settings())  # type: ignore[arg-type]
    assert log_exception_32 is Flask.__dict__["log_exception"]
    exc_info = (RuntimeError, RuntimeError("x"), None)
    Flask("t").log_exception("ctx", exc_info)
    assert [("ctx", exc_info)] == calls


def test_wsgi_call_passes_any_arguments_through(logkit: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flask.__call__ is wrapped with *args/**kwargs: an unexpected signature reaches Flask as given."""
    from flask import Flask

    from otel_logkit import web

    calls: list[tuple[Any, ...]] = []

    def call(self: Any, *args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return "called"

    monkeypatch.setattr(Flask, "__call__", call)
    web.install(setup.current_settings())  # type: ignore[arg-type]
    assert hasattr(Flask.__call__, "__otel_logkit_original__")
    assert "called" == Flask("t")("environ", "start_response", "extra", key=1)
    assert [(("environ", "start_response", "extra"), {"key": 1})] == calls


def test_app_logger_handlers_see_unhandled_exception(app: Any, logkit: Captured) -> None:
    """Review #7: Flask.log_exception still runs, so handlers on app.logger get the exception."""
    handler = _Records()
    app.logger.addHandler(handler)
    try:
        response = app.test_client().post("/fail", data=b"x")
    finally:
        app.logger.removeHandler(handler)
    assert response.status_code == 500
    [record] = handler.records
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "Exception on /fail [POST]" == record.getMessage()


def test_flask_duplicate_line_dropped_only_on_own_handler(app: Any, logkit: Captured) -> None:
    """otel-logkit writes one ERROR line per failure: Flask's own line is not repeated on stdout."""
    assert app.test_client().post("/fail", data=b"x").status_code == 500
    errors = [line for line in logkit.lines() if line["level"] == "ERROR"]
    assert ["unhandled exception"] == [line["message"] for line in errors]


def test_app_logger_exception_not_logged_by_logkit_still_written(app: Any, logkit: Captured) -> None:
    """An app's own log line with an exception otel-logkit never wrote reaches stdout."""
    with app.test_request_context("/own"):
        try:
            raise ValueError("own")
        except ValueError:
            app.log_exception(sys.exc_info())
    assert ["ERROR"] == [line["level"] for line in logkit.lines() if line.get("logger") == app.logger.name]


def test_bound_fields_reset_between_requests(logkit: Captured) -> None:
    """Review #12: fields a view binds with otel_logkit.bind() do not reach the next request on the thread."""
    from flask import Flask

    app = Flask("bind")
    log = structlog.get_logger("tests.bind")

    @app.get("/bind")
    def bind_view() -> str:
        otel_logkit.bind(user_id="u-1")
        log.info("bound")
        return "ok"

    @app.get("/plain")
    def plain_view() -> str:
        log.info("plain")
        return "ok"

    client = app.test_client()
    assert client.get("/bind", headers={"X-Request-ID": "b-1"}).status_code == 200
    assert client.get("/plain", headers={"X-Request-ID": "b-2"}).status_code == 200
    lines = {line["message"]: line for line in logkit.lines() if line.get("logger") == "tests.bind"}
    assert "u-1" == lines["bound"]["user_id"]
    assert "user_id" not in lines["plain"]
    assert {} == structlog.contextvars.get_contextvars()


def test_thread_fields_restored_after_request(logkit: Captured) -> None:
    """Fields the server thread had bound before a request are back after it, even if the view rebinds them."""
    from flask import Flask

    app = Flask("bind-outer")

    @app.get("/rebind")
    def rebind_view() -> str:
        otel_logkit.bind(worker="view", extra=1)
        return "ok"

    structlog.contextvars.bind_contextvars(worker="w-1")
    assert 200 == app.test_client().get("/rebind").status_code
    assert {"worker": "w-1"} == structlog.contextvars.get_contextvars()


def test_bound_fields_reach_streamed_body(logkit: Captured) -> None:
    """Fields bound in a view are still bound while its streamed body is produced."""
    from flask import Flask, Response, stream_with_context

    app = Flask("bind-stream")
    log = structlog.get_logger("tests.bind")

    @app.get("/s")
    def stream_view() -> Response:
        otel_logkit.bind(user_id="u-2")

        def body() -> Iterator[str]:
            log.info("chunk")
            yield "x"

        return Response(stream_with_context(body()))

    response = app.test_client().get("/s")
    assert "x" == response.get_data(as_text=True)
    response.close()
    [chunk] = [line for line in logkit.lines() if line["message"] == "chunk"]
    assert "u-2" == chunk["user_id"]


def test_one_warning_stays_one_warning(logkit: Captured) -> None:
    """Flask's test_max_cookie_size: a response that warns once still warns exactly once."""
    from flask import Flask, Response

    app = Flask("cookie")
    app.config["MAX_COOKIE_SIZE"] = 100

    @app.get("/")
    def index() -> Response:
        response = Response("", status=204)
        response.set_cookie("foo", "bar" * 100)
        return response

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app.test_client().get("/")
    assert ["cookie is too large"] == [
        "cookie is too large" for warning in caught if "cookie is too large" in str(warning.message)
    ]
    assert 1 == len(caught)


def test_request_raises_no_warning(app: Any, logkit: Captured) -> None:
    """Serving requests (plain, 404, failing) triggers no warning, deprecations included."""
    client = app.test_client()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.get("/orders/1").status_code == 200
        assert client.get("/nowhere").status_code == 404
        assert client.post("/fail", data=b"x").status_code == 500


def test_trusted_hosts_checked_before_host_is_read(logkit: Captured) -> None:
    """Flask's test_trusted_hosts_config: an untrusted Host is refused with 400, trusted ones served."""
    from flask import Flask

    app = Flask("trusted")
    app.config["TRUSTED_HOSTS"] = ["example.test", ".other.test"]
    app.add_url_rule("/", "index", lambda: "")
    client = app.test_client()
    assert 200 == client.get(base_url="http://example.test").status_code
    assert 200 == client.get(base_url="http://a.other.test").status_code
    assert 400 == client.get(base_url="http://bad.test").status_code


def test_trusted_hosts_checked_with_excluded_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """With OTEL_PYTHON_FLASK_EXCLUDED_URLS set, the URL check still leaves the Host to Flask."""
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "health")
    with _configured() as captured:
        from flask import Flask

        app = Flask("trusted-excluded")
        app.config["TRUSTED_HOSTS"] = ["example.test"]
        app.add_url_rule("/health", "health", lambda: "")
        app.add_url_rule("/work", "work", lambda: "")
        client = app.test_client()
        assert 400 == client.get("/work", base_url="http://bad.test").status_code
        assert 200 == client.get("/health", base_url="http://example.test").status_code
        assert 200 == client.get("/work", base_url="http://example.test").status_code
        assert ["GET /work", "GET /work"] == [span.name for span in captured.server_spans()]


def _configured() -> Any:
    from contextlib import contextmanager

    return contextmanager(configured)()


def _span_shape(span: Any) -> dict[str, Any]:
    """What a user sees of a server span, minus otel-logkit's own request id and the scope."""
    attributes = {k: v for k, v in span.attributes.items() if k != attributes_module.REQUEST_ID}
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": attributes,
        "status": (span.status.status_code, span.status.description),
        "events": [event.name for event in span.events],
        "parent": span.parent.span_id if span.parent else None,
    }


def _serve_all(app: Any) -> None:
    """The same requests for both apps: a rule, a 404, a 500, a remote parent, an odd method."""
    client = app.test_client()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client.get("/orders/5?x=1", headers={"User-Agent": "t/1"}, buffered=True)
    client.get("/missing", buffered=True)
    client.get("/nowhere", buffered=True)
    client.post("/fail", data=b"x", buffered=True)
    client.get("/orders/6", headers={"traceparent": parent}, buffered=True)
    client.open("/orders/7", method="PURGE", buffered=True)


def test_server_spans_match_the_contrib_flask_instrumentation(logkit: Captured) -> None:
    """Span names, kinds, attributes, status and events are what FlaskInstrumentor gives."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    reference = make_flask_app()
    FlaskInstrumentor.instrument_app(reference)
    try:
        _serve_all(reference)
    finally:
        FlaskInstrumentor.uninstrument_app(reference)
    expected = [_span_shape(span) for span in logkit.server_spans()]
    logkit.spans.clear()
    _serve_all(make_flask_app())
    actual = [_span_shape(span) for span in logkit.server_spans()]
    assert 6 == len(expected)
    assert expected == actual


def test_request_context_copied_to_a_thread_leaves_the_span_alone(logkit: Captured) -> None:
    """copy_current_request_context in a worker thread: the request's span ends at its own teardown."""
    from concurrent.futures import ThreadPoolExecutor

    from flask import Flask, copy_current_request_context, request

    app = Flask("copied")

    @app.get("/t")
    def view() -> str:
        @copy_current_request_context
        def work() -> str:
            return str(request.path)

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(work).result(timeout=10)

    response = app.test_client().get("/t", buffered=True)
    assert "/t" == response.get_data(as_text=True)
    [span] = logkit.server_spans()
    assert ("GET /t", 200) == (span.name, span.attributes["http.status_code"])
    assert [] == [line for line in logkit.lines() if line["level"] in ("WARNING", "ERROR")]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ""),
        ({"OTEL_PYTHON_EXCLUDED_URLS": "health"}, "health"),
        ({"OTEL_PYTHON_EXCLUDED_URLS": "health", "OTEL_PYTHON_FLASK_EXCLUDED_URLS": "ping"}, "ping"),
    ],
    ids=["none", "generic", "flask-specific-wins"],
)
def test_flask_span_exclusions_read_as_the_contrib_instrumentation(
    make_settings: Any, env: dict[str, str], expected: str
) -> None:
    """OTEL_PYTHON_FLASK_EXCLUDED_URLS, else OTEL_PYTHON_EXCLUDED_URLS, as FlaskInstrumentor reads them."""
    assert expected == make_settings(**env).flask_span_excluded_urls
