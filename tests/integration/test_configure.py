"""otel_logkit.configure() in-process: the chain, the stdlib bridge, and apps that configure logging."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import structlog
from opentelemetry import trace

import otel_logkit
from otel_logkit import setup
from otel_logkit.logs.stdlib import silence_logger
from otel_logkit.testing import Captured, capture


def test_structlog_and_stdlib_lines_share_the_shape(captured: Captured) -> None:
    """structlog and stdlib lines both carry the contract's fields."""
    structlog.get_logger("app").info("order created", order_id=1)
    logging.getLogger("lib").warning("disk %s%% full", 91)
    lines = captured.lines()
    assert [("app", "order created"), ("lib", "disk 91% full")] == [(x["logger"], x["message"]) for x in lines]
    for line in lines:
        assert {"timestamp", "level", "message", "logger", "service", "env"} <= set(line)
        assert ("test-svc", "test") == (line["service"], line["env"])


def test_trace_ids_match_the_span_and_the_exported_record(captured: Captured) -> None:
    """Inside a span the line and the exported record carry the span's ids."""
    with trace.get_tracer("t").start_as_current_span("work") as span:
        structlog.get_logger("app").info("inside")
    context = span.get_span_context()
    (line,) = captured.lines()
    assert (f"{context.trace_id:032x}", f"{context.span_id:016x}") == (line["trace_id"], line["span_id"])
    (record,) = captured.log_records()
    assert (context.trace_id, context.span_id) == (record.log_record.trace_id, record.log_record.span_id)
    assert "inside" == record.log_record.body
    assert "app" == record.log_record.attributes["logger"]


def test_configure_twice_is_harmless(captured: Captured) -> None:
    """A second configure() changes nothing: one handler, one line per call."""
    settings = setup.current_settings()
    assert settings is otel_logkit.configure()
    logging.getLogger("x").warning("once")
    assert 1 == len(captured.lines())


def test_level_governs_stdout_and_export() -> None:
    """In prod (WARNING) an INFO line is neither printed nor exported."""
    with capture(env="prod") as cap:
        log = structlog.get_logger("app")
        log.info("chatty")
        logging.getLogger("lib").info("chatty too")
        log.warning("kept")
        records = cap.log_records()
    assert ["kept"] == [line["message"] for line in cap.lines()]
    assert ["kept"] == [r.log_record.body for r in records]


def test_uvicorn_dictconfig_is_taken_back(captured: Captured) -> None:
    """uvicorn's own dictConfig (as at server start) still ends in JSON lines, once each."""
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(LOGGING_CONFIG)
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/", "1.1", 200)
    lines = captured.lines()
    assert ["uvicorn.error", "uvicorn.access"] == [line["logger"] for line in lines]
    assert 'GET / HTTP/1.1" 200' in lines[1]["message"]


def test_basic_config_force_keeps_json(captured: Captured) -> None:
    """logging.basicConfig(force=True) by the app does not bring plain text back."""
    logging.basicConfig(force=True, level=logging.DEBUG)
    logging.getLogger("app").warning("still json")
    assert ["still json"] == [line["message"] for line in captured.lines()]


def test_file_handlers_of_the_app_are_kept(captured: Captured, tmp_path: object) -> None:
    """dictConfig handlers that are not the console (here a file) stay in place."""
    path = f"{tmp_path}/app.log"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"file": {"class": "logging.FileHandler", "filename": path}},
            "loggers": {"audit": {"handlers": ["file"], "level": "INFO"}},
        }
    )
    logging.getLogger("audit").info("to both")
    with open(path) as file:
        assert "to both\n" == file.read()
    assert ["to both"] == [line["message"] for line in captured.lines()]


def test_app_structlog_configure_keeps_trace_fields_and_export(captured: Captured) -> None:
    """An app's own structlog.configure keeps its renderer; trace ids and export are inserted."""
    stream = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    with trace.get_tracer("t").start_as_current_span("s") as span:
        structlog.get_logger().info("own chain")
    line = json.loads(stream.getvalue())
    assert f"{span.get_span_context().trace_id:032x}" == line["trace_id"]
    assert "test-svc" == line["service"]
    assert ["own chain"] == [r.log_record.body for r in captured.log_records()]


def test_silenced_logger_stays_silent_after_dictconfig(captured: Captured) -> None:
    """silence_logger survives a later dictConfig that re-enables the logger."""
    from uvicorn.config import LOGGING_CONFIG

    silence_logger("uvicorn.access")
    logging.config.dictConfig(LOGGING_CONFIG)
    logging.getLogger("uvicorn.access").info("GET / 200")
    assert [] == captured.lines()


def test_sdk_internal_lines_are_not_exported(captured: Captured) -> None:
    """opentelemetry.* lines reach stdout (at WARNING) but never the export."""
    logging.getLogger("opentelemetry.sdk.trace").warning("internal")
    structlog.get_logger("app").warning("app")
    assert ["internal", "app"] == [line["message"] for line in captured.lines()]
    assert ["app"] == [r.log_record.body for r in captured.log_records()]


def test_console_format_renders_for_humans() -> None:
    """LOGKIT_LOG_FORMAT=console prints readable, non-JSON lines with the message."""
    with capture(env="dev", log_format="console") as cap:
        structlog.get_logger("app").info("hello", order_id=3)
    text = cap.text()
    assert "hello" in text
    assert "order_id" in text
    assert not text.startswith("{")


def test_sdk_disabled_still_prints_json() -> None:
    """OTEL_SDK_DISABLED=true: no export, no trace ids, JSON on stdout all the same."""
    with capture(env="test", sdk_disabled=True) as cap:
        structlog.get_logger("app").warning("plain")
        assert setup.log_queue() is None
    (line,) = cap.lines()
    assert "plain" == line["message"]
    assert "trace_id" not in line


def test_exception_line_has_traceback_and_error_type(captured: Captured) -> None:
    """log.exception gives exception text and error_type, on stdout and in the record."""
    try:
        {}["missing"]
    except KeyError:
        structlog.get_logger("app").exception("lookup failed")
    (line,) = captured.lines()
    assert ("ERROR", "KeyError") == (line["level"], line["error_type"])
    assert "Traceback" in line["exception"]
    (record,) = captured.log_records()
    assert "KeyError" == record.log_record.attributes["error_type"]


def test_reset_restores_plain_logging() -> None:
    """After reset() the stdlib patches are gone."""
    original = logging.config.dictConfig
    with capture():
        assert logging.config.dictConfig is not original
    assert logging.config.dictConfig is original


def test_stdlib_extra_fields_become_fields(captured: Captured) -> None:
    """logging's extra={...} (and LoggerAdapter fields) appear as fields of the line."""
    logging.getLogger("lib").warning("slow query", extra={"query_ms": 812, "table": "orders"})
    (line,) = captured.lines()
    assert (812, "orders") == (line["query_ms"], line["table"])


class _Collect(logging.Handler):
    """The app's own handler (a file, mail-on-error, Sentry): keeps every record it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_silenced_and_filtered_records_still_reach_the_apps_own_handlers(captured: Captured) -> None:
    """otel-logkit drops uvicorn's access line and duplicate error lines from its console only."""
    from otel_logkit import web
    from otel_logkit.web._core import mark_logged

    web.install(setup.current_settings(), None, None)  # type: ignore[arg-type]
    access, errors = _Collect(), _Collect()
    logging.getLogger("uvicorn.access").addHandler(access)
    logging.getLogger("uvicorn.error").addHandler(errors)
    error = RuntimeError("boom")
    mark_logged(error)
    try:
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", "/", "1.1", 200)
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=error)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(access)
        logging.getLogger("uvicorn.error").removeHandler(errors)
    assert (1, 1) == (len(access.records), len(errors.records))
    assert [] == [line for line in captured.lines() if line["logger"].startswith("uvicorn")]
    assert not logging.getLogger("uvicorn.access").disabled


def test_root_level_set_by_the_app_is_kept() -> None:
    """An app that set root to ERROR keeps it: otel-logkit does not lower it."""
    root = logging.getLogger()
    root.setLevel(logging.ERROR)
    with capture(env="dev"):
        assert logging.ERROR == root.level


def test_apps_root_handlers_see_what_they_saw_before() -> None:
    """Lowering root's default level for the console does not send more records to the app's root handlers."""
    own = _Collect()
    logging.getLogger().setLevel(logging.WARNING)
    with capture(env="dev") as cap:
        logging.getLogger().addHandler(own)
        try:
            logging.getLogger("lib").info("console only")
            logging.getLogger("lib").warning("both")
        finally:
            logging.getLogger().removeHandler(own)
    assert ["both"] == [record.getMessage() for record in own.records]
    assert ["console only", "both"] == [line["message"] for line in cap.lines()]
