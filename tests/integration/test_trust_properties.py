"""Property tests: for generated app structlog configurations and generated events carrying
planted secrets, no secret reaches stdout, the app's own output or any exported byte, and each
line is exported exactly once."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from otel_logkit import _failsafe
from otel_logkit.testing import capture
from otel_logkit.wire import encode_logs

SECRETS = {
    "card": "4242424242424242",
    "spaced_card": "4111 1111 1111 1111",
    "email": "jane.doe@example.com",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
}
PASSWORD = "pw-Zx81-qq"


class _ReprLeak:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __str__(self) -> str:
        return "clean"

    def __repr__(self) -> str:
        return f"Leak({self.secret!r})"


def _placed(secret: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            secret,
            f"text before {secret} after",
            {"nested": {"deeper": [secret]}},
            [1, secret],
            _ReprLeak(secret),
            json.dumps({"inner": secret}),
        ]
    )


_KEYS = st.sampled_from(["note", "path", "host", "name", "operation", "kind", "detail", "order_id", "request_id"])
_EVENTS = st.lists(
    st.tuples(_KEYS, st.sampled_from(sorted(SECRETS)).flatmap(lambda name: _placed(SECRETS[name]))),
    min_size=1,
    max_size=4,
).map(dict)

_MIDDLE = [
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso"),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
    structlog.processors.UnicodeDecoder(),
    structlog.contextvars.merge_contextvars,
]
_RENDERERS = [
    structlog.processors.JSONRenderer(),
    structlog.processors.KeyValueRenderer(),
    structlog.processors.LogfmtRenderer(),
    structlog.dev.ConsoleRenderer(colors=False),
]


@st.composite
def app_configurations(draw: st.DrawFn) -> dict[str, Any]:
    """A structlog configuration an app could write: some processors, a renderer or the stdlib hand-off."""
    middle = draw(st.lists(st.sampled_from(_MIDDLE), unique_by=id, max_size=4))
    stdlib = draw(st.booleans())
    if stdlib:
        return {
            "processors": [
                structlog.stdlib.add_log_level,
                *middle,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            "logger_factory": structlog.stdlib.LoggerFactory(),
            "wrapper_class": structlog.stdlib.BoundLogger,
        }
    return {"processors": [*middle, draw(st.sampled_from(_RENDERERS))]}


def _leaked(text: str) -> list[str]:
    return [secret for secret in (*SECRETS.values(), PASSWORD) if secret in text]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(config=app_configurations(), events=st.lists(_EVENTS, min_size=1, max_size=3))
def test_no_secret_leaves_whatever_chain_the_app_configures(
    config: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    """No planted secret on stdout, in the app's own output or the export; one export per line."""
    with capture(env="test", service="svc", log_level=logging.DEBUG) as captured:
        own = io.StringIO()
        if "logger_factory" not in config:
            config = {**config, "logger_factory": structlog.PrintLoggerFactory(own)}
        structlog.configure(**config, cache_logger_on_first_use=False)
        log = structlog.get_logger("app")
        for fields in events:
            log.warning("event", password=PASSWORD, **fields)
        records = captured.log_records()
        payload = encode_logs(records).decode("utf-8", "replace")
        assert [] == _leaked(own.getvalue())
        assert [] == _leaked(captured.text())
        assert [] == _leaked(payload)
        assert len(events) == len(records)


_MALFORMED = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(), max_size=20),
    st.binary(max_size=20),
    st.just(("not", "an exc_info")),
    st.just(object()),
    st.integers(min_value=2**64, max_value=2**80),
    st.builds(_ReprLeak, st.just(SECRETS["card"])),
    st.just("a" * 300_000 + " 4242424242424242"),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(values=st.dictionaries(st.sampled_from(["a", "exc_info", "stack_info", "b", "note"]), _MALFORMED, max_size=4))
@example(values={"a": "\x85 \u2028"})  # line separators other than \n, written raw inside a JSON string
def test_malformed_events_return_normally_and_export_valid_utf8(values: dict[str, Any]) -> None:
    """Bad exc_info, huge values, surrogates, bytes, huge ints: the call returns and a line is written."""
    previous = _failsafe.raise_errors
    _failsafe.raise_errors = False
    try:
        with capture(env="test", service="svc") as captured:
            structlog.get_logger("app").info("odd", **values)
            lines = captured.lines()
            records = captured.log_records()
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

            ExportLogsServiceRequest.FromString(encode_logs(records))  # refuses invalid UTF-8
    finally:
        _failsafe.raise_errors = previous
    assert "odd" in [line["message"] for line in lines]
    assert SECRETS["card"] not in json.dumps(lines)
