"""The review's trust findings: no secret in clear whatever chain the app configures, and
telemetry that never raises into the app. Each test failed before its fix."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from structlog.testing import capture_logs

from otel_logkit import _failsafe
from otel_logkit.testing import Captured
from otel_logkit.wire import encode_logs

CARD = "4242424242424242"
PASSWORD = "hunter2-secret"
EMAIL = "jane.doe@example.com"


def _exported_text(captured: Captured) -> str:
    return json.dumps(
        [(r.log_record.body, dict(r.log_record.attributes or {})) for r in captured.log_records()], default=str
    )


def test_app_structlog_configure_is_redacted_on_stdout_and_export(captured: Captured) -> None:
    """An app's own ``structlog.configure`` (add_log_level + JSONRenderer) never prints or exports a secret."""
    stream = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    structlog.get_logger().info("login", password=PASSWORD, card=CARD)
    printed = stream.getvalue()
    assert PASSWORD not in printed
    assert CARD not in printed
    assert "****4242" in printed
    exported = _exported_text(captured)
    assert PASSWORD not in exported
    assert CARD not in exported
    assert 1 == len(captured.log_records())


def test_wrap_for_formatter_chain_is_exported_once_and_redacted(captured: Captured) -> None:
    """structlog's documented stdlib integration exports each line exactly once, redacted."""
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.get_logger("app").warning("charge", card=CARD, note=f"mail {EMAIL}")
    records = captured.log_records()
    assert ["charge"] == [r.log_record.body for r in records]
    exported = _exported_text(captured)
    assert CARD not in exported
    assert EMAIL not in exported
    assert CARD not in captured.text()


def test_app_processor_formatter_on_a_file_handler_is_redacted(captured: Captured, tmp_path: Path) -> None:
    """A ProcessorFormatter the app puts on its own file handler writes redacted lines."""
    path = tmp_path / "app.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[structlog.processors.JSONRenderer()]))
    logger = logging.getLogger("files")
    logger.addHandler(handler)
    try:
        logger.warning("paid with %s", CARD)
    finally:
        logger.removeHandler(handler)
        handler.close()
    written = path.read_text()
    assert "paid with ****4242" in written
    assert CARD not in written


def test_capture_logs_entries_are_redacted(captured: Captured) -> None:
    """An app's own tests using ``capture_logs`` see its events, redacted, and nothing added."""
    with capture_logs() as entries:
        structlog.get_logger().info("signup", email=EMAIL, plan="pro")
    assert [{"event": "signup", "email": "***@example.com", "plan": "pro", "log_level": "info"}] == entries


def test_values_under_allow_listed_keys_are_scanned(captured: Captured) -> None:
    """``path``, ``host`` and ``name`` hold no secret in clear: by value, whatever the key."""
    structlog.get_logger("app").info("hit", path=f"/users/{EMAIL}/reset", host=CARD, name=EMAIL)
    (line,) = captured.lines()
    assert ("/users/***@example.com/reset", "****4242", "***@example.com") == (line["path"], line["host"], line["name"])


class _Dsn:
    """An object whose ``str`` is clean but whose ``repr`` holds a secret."""

    def __str__(self) -> str:
        return "database"

    def __repr__(self) -> str:
        return f"Dsn('postgresql://app@db/shop', owner={EMAIL!r}, card={CARD!r})"


def test_what_is_rendered_is_what_was_redacted(captured: Captured) -> None:
    """An object is rendered with the text that was redacted (its repr), not a clean ``str``."""
    structlog.get_logger("app").info("connect", dsn=_Dsn())
    (line,) = captured.lines()
    assert EMAIL not in line["dsn"]
    assert CARD not in line["dsn"]
    assert line["dsn"].startswith("Dsn(")


class _Raising:
    def __repr__(self) -> str:
        raise RuntimeError("repr is broken")

    __str__ = __repr__


@pytest.mark.parametrize(
    "fields",
    [{"exc_info": ("oops",)}, {"exc_info": 42}, {"thing": _Raising()}],
    ids=["exc-info-1-tuple", "exc-info-int", "raising-repr"],
)
def test_malformed_events_return_normally_with_a_line(
    captured: Captured, monkeypatch: pytest.MonkeyPatch, fields: dict[Any, Any]
) -> None:
    """A malformed event never raises into the caller, and its line is written."""
    monkeypatch.setattr(_failsafe, "raise_errors", False)
    structlog.get_logger("app").info("odd", **fields)
    lines = [line for line in captured.lines() if line["logger"] != "otel_logkit"]
    assert ["odd"] == [line["message"] for line in lines]


def test_a_stdlib_record_that_cannot_be_formatted_still_gets_a_line(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong %-arguments: otel-logkit's handler writes the template, redacted, with the error noted."""
    monkeypatch.setattr(_failsafe, "raise_errors", False)
    (handler,) = [h for h in logging.getLogger().handlers if type(h).__name__ == "LogkitHandler"]
    record = logging.LogRecord("lib", logging.ERROR, __file__, 1, "card %s for %s", (CARD,), None)
    handler.handle(record)
    (line,) = [line for line in captured.lines() if line["logger"] == "lib"]
    assert ("card %s for %s", "ERROR") == (line["message"], line["level"])
    assert "logkit_error" in line
    assert CARD not in captured.text()


def test_a_user_field_named_level_does_not_forge_the_line(captured: Captured) -> None:
    """User data never overwrites a contract field: it is kept as ``app_<field>``."""
    structlog.get_logger("app").info("search", level="FORGED", service="evil", timestamp="yesterday")
    (line,) = captured.lines()
    assert ("INFO", "test-svc") == (line["level"], line["service"])
    assert ("FORGED", "evil", "yesterday") == (line["app_level"], line["app_service"], line["app_timestamp"])


def test_lone_surrogates_are_written_and_exported_as_valid_utf8(captured: Captured) -> None:
    """A lone surrogate never fails the line, and every exported byte is valid UTF-8."""
    structlog.get_logger("app").info("file \udcff", name="bad \ud800 name", nested={"k": ["\udfff"]})
    (line,) = captured.lines()
    assert "bad \\ud800 name" == line["name"]
    # The protobuf parser refuses invalid UTF-8 in string fields, as a collector does.
    request = ExportLogsServiceRequest.FromString(encode_logs(captured.log_records()))
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    assert "file \\udcff" == record.body.string_value


def test_internal_failure_reports_once_and_keeps_the_line(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing processor writes the line redacted with the error noted, reported once."""
    monkeypatch.setattr(_failsafe, "raise_errors", False)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr("otel_logkit.logs.processors.TimeStamper.__call__", broken)
    log = structlog.get_logger("app")
    log.info("first", card=CARD)
    log.info("second")
    lines = [line for line in captured.lines() if line.get("logger") != "otel_logkit"]
    assert ["first", "second"] == [line["message"] for line in lines if "logkit_error" in line]
    assert CARD not in captured.text()
    reports = [line for line in captured.lines() if line["message"].startswith("otel-logkit failed in log line")]
    assert 1 == len(reports)


def test_one_export_per_line_for_plain_configure(captured: Captured) -> None:
    """otel-logkit's own chain exports each line once."""
    structlog.get_logger("app").info("one")
    logging.getLogger("lib").warning("two")
    assert ["one", "two"] == [r.log_record.body for r in captured.log_records()]


def test_an_app_chain_renders_none_of_otel_logkits_bookkeeping(captured: Captured) -> None:
    """otel-logkit's private keys (the exception object for fingerprints, timestamps) never reach the app's renderer."""
    stream = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger().error("failed", exc_info=True)
    line = json.loads(stream.getvalue())
    assert [] == [key for key in line if key.startswith("_logkit")]
    assert "ValueError: boom" in line["exception"]
