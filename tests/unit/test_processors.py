"""Each processor of the chain, on plain event dicts."""

from __future__ import annotations

import logging
import re

import orjson
from opentelemetry.sdk.trace import TracerProvider

from otel_logkit.logs import processors as p


def test_level_is_upper_case() -> None:
    """add_log_level maps method names to upper-case level names."""
    assert p.add_log_level(None, "warn", {}) == {"level": "WARNING"}
    assert p.add_log_level(None, "exception", {}) == {"level": "ERROR"}
    assert p.add_log_level(None, "info", {}) == {"level": "INFO"}


def test_explicit_level_wins() -> None:
    """A level given by the caller is kept."""
    assert p.add_log_level(None, "info", {"level": "CUSTOM"}) == {"level": "CUSTOM"}


def test_logger_name_from_stdlib_record() -> None:
    """For stdlib records the record's logger name is used."""
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "m", (), None)
    assert p.add_logger_name(None, "info", {"_record": record})["logger"] == "uvicorn.error"


def test_trace_context_absent_outside_span() -> None:
    """Outside a span no trace keys are added (never zeros)."""
    assert p.add_trace_context(None, "info", {}) == {}


def test_trace_context_inside_span() -> None:
    """Inside a span trace_id/span_id are the span's, as lower-case hex."""
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        event = p.add_trace_context(None, "info", {})
        context = span.get_span_context()
    assert f"{context.trace_id:032x}" == event["trace_id"]
    assert f"{context.span_id:016x}" == event["span_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", event["trace_id"])


def test_service_fields() -> None:
    """ServiceFields adds service and env, keeping explicit ones."""
    add = p.ServiceFields("shop", "prod")
    assert add(None, "info", {}) == {"service": "shop", "env": "prod"}
    assert add(None, "info", {"service": "other"}) == {"service": "other", "env": "prod"}


def test_timestamp_is_iso_utc_milliseconds() -> None:
    """TimeStamper writes ISO 8601 UTC with milliseconds and Z, and keeps the nanoseconds."""
    event = p.TimeStamper()(None, "info", {})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])
    assert isinstance(event[p.NS_KEY], int)


def test_exception_fields() -> None:
    """exc_info becomes exception (traceback text) and error_type."""
    try:
        raise KeyError("sku")
    except KeyError:
        event = p.add_exception_fields(None, "exception", {"exc_info": True})
    assert event["error_type"] == "KeyError"
    assert "Traceback (most recent call last)" in event["exception"]
    assert "exc_info" not in event


def test_exception_instance_accepted() -> None:
    """exc_info may be an exception instance."""
    error = ValueError("bad")
    assert p.add_exception_fields(None, "error", {"exc_info": error})["error_type"] == "ValueError"


def test_event_renamed_to_message() -> None:
    """structlog's event key becomes message."""
    assert p.rename_event_to_message(None, "info", {"event": "hello"}) == {"message": "hello"}


def test_private_keys_dropped() -> None:
    """Private bookkeeping never reaches the rendered line."""
    event = {p.NS_KEY: 1, "_record": object(), "_from_structlog": False, "a": 1}
    assert p.drop_private_keys(None, "info", event) == {"a": 1}


def test_render_json_is_one_line_and_escapes_newlines() -> None:
    """A forged newline in a value cannot split the line."""
    line = p.render_json(None, "info", {"message": 'x\n{"level":"ERROR"}', "n": 1})
    assert "\n" not in line
    assert orjson.loads(line) == {"message": 'x\n{"level":"ERROR"}', "n": 1}


def test_render_json_handles_unusual_values() -> None:
    """Objects, bytes, sets and huge integers render instead of raising."""
    line = p.render_json(None, "info", {"o": object(), "b": b"\xff", "s": {1}, "big": 2**70})
    decoded = orjson.loads(line)
    assert decoded["big"] == str(2**70)
    assert decoded["s"] == [1]


def test_caller_module_names_logger(captured: object) -> None:
    """structlog.get_logger() with no name is named after the calling module."""
    import structlog

    structlog.get_logger().info("hi")
    lines = captured.lines()  # type: ignore[attr-defined]
    assert __name__ == lines[-1]["logger"]


def test_uvicorn_color_message_dropped() -> None:
    """uvicorn's ANSI-coloured duplicate of the message never reaches the line."""
    assert {"a": 1} == p.drop_private_keys(None, "info", {"a": 1, "color_message": "\x1b[36m%d\x1b[0m"})
