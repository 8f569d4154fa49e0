"""Gateway call logic without a network: error codes, the failsafe guard, the ``gateway()`` wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

from otel_logkit import _failsafe
from otel_logkit import attributes as attr
from otel_logkit.config import Settings
from otel_logkit.gateways import calls, gateway, hooks
from otel_logkit.gateways.rules import parse_gateways
from otel_logkit.redact import REDACTED, Redactor
from otel_logkit.testing import capture


@pytest.fixture
def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider writing to an in-memory exporter, passed explicitly (not global)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


ERROR_CASES = [
    ("requests_read_timeout", requests.exceptions.ReadTimeout(), "timeout"),
    ("requests_connect_timeout", requests.exceptions.ConnectTimeout(), "timeout"),
    ("requests_connection", requests.exceptions.ConnectionError(), "connection_error"),
    ("httpx_connect", httpx.ConnectError("x"), "connection_error"),
    ("httpx_read_timeout", httpx.ReadTimeout("x"), "timeout"),
    ("builtin_timeout", TimeoutError(), "timeout"),
    ("refused", ConnectionRefusedError(), "connection_error"),
    ("other", ValueError("x"), "error"),
]


@pytest.mark.parametrize(("exc", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_error_code_for_exception(exc: BaseException, expected: str) -> None:
    """Exceptions map to ``timeout``, ``connection_error`` or ``error`` by class."""
    assert calls.error_code_for(exc) == expected


def test_params_summary_joins_redacted_query_and_body() -> None:
    """The summary is ``?query body``, both redacted and truncated to the summary size."""
    redactor = Redactor(max_bytes=64)
    summary = calls.params_summary(
        redactor, "token=abc&page=2", b'{"email":"jo@x.io","note":"' + b"n" * 200 + b'"}', "application/json", sms=False
    )
    assert summary.startswith(f"?token={REDACTED}&page=2 {{")
    assert "jo@x.io" not in summary
    assert "…[truncated" in summary


def test_failsafe_contains_hook_errors(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Without the test-suite switch a failing hook is recorded on the span and logged once, never raised."""
    monkeypatch.setattr(_failsafe, "raise_errors", False)
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def broken() -> None:
        raise RuntimeError("bug in a hook")

    _failsafe.reset()
    with provider.get_tracer("t").start_as_current_span("call") as span:
        calls.failsafe("test.hook", span, broken)
        calls.failsafe("test.hook", span, broken)
    assert exporter.get_finished_spans()[0].attributes[attr.HOOK_ERROR] == "RuntimeError"
    assert 1 == len([r for r in caplog.records if "test.hook" in r.getMessage()])


def test_failsafe_reraises_under_the_test_suite_switch() -> None:
    """With otel-logkit's own test switch on (conftest), the hook's own bug surfaces."""

    def broken() -> None:
        raise RuntimeError("bug in a hook")

    with pytest.raises(RuntimeError, match="bug in a hook"):
        calls.failsafe("test.hook", None, broken)


def test_configure_patches_nothing_without_gateways() -> None:
    """With no ``LOGKIT_GATEWAYS`` host, no library method is wrapped."""
    with capture(instrument=True):
        assert not hooks.installed_observers()


def test_configure_installs_failure_observers_for_gateways() -> None:
    """With a gateway host, configure() installs the failure observers, and reset removes them."""
    with capture(instrument=True, gateways=parse_gateways("sms=api.twilio.com", "LOGKIT_GATEWAYS")):
        assert hooks.installed_observers()
    assert not hooks.installed_observers()


def test_instrument_kwargs_shape() -> None:
    """The lead passes these straight to the two instrumentors."""
    kwargs = hooks.instrument_kwargs(Settings.from_env({"LOGKIT_GATEWAYS": "sms=api.twilio.com"}), Redactor())
    try:
        assert set(kwargs) == {"requests", "httpx"}
        assert set(kwargs["requests"]) == {"request_hook", "response_hook"}
        assert set(kwargs["httpx"]) == {"request_hook", "response_hook", "async_request_hook", "async_response_hook"}
        assert asyncio.iscoroutinefunction(kwargs["httpx"]["async_request_hook"])
    finally:
        hooks.uninstall_failure_observers()


def test_failure_observers_install_once_and_uninstall() -> None:
    """Installing twice wraps once; uninstalling restores the library's own methods."""
    original = requests.adapters.HTTPAdapter.send
    hooks.install_failure_observers()
    wrapped = requests.adapters.HTTPAdapter.send
    hooks.install_failure_observers()
    assert requests.adapters.HTTPAdapter.send is wrapped
    assert wrapped is not original
    hooks.uninstall_failure_observers()
    assert requests.adapters.HTTPAdapter.send is original


def test_gateway_wrapper_sync(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """``with gateway(...)``: a CLIENT span named for the call, redacted params, DEBUG lines."""
    tracer_provider, exporter = provider
    with (
        capture_logs() as logs,
        gateway(
            "payment",
            operation="charge",
            params={"amount": 1000, "card": {"number": "4242424242424242", "cvc": "123"}},
            tracer_provider=tracer_provider,
        ) as call,
    ):
        call.record_response(200)
    (span,) = exporter.get_finished_spans()
    assert span.name == "payment charge"
    assert (
        span.attributes[attr.GATEWAY_PARAMS] == f'{{"amount":1000,"card":{{"number":"****4242","cvc":"{REDACTED}"}}}}'
    )
    assert span.attributes[attr.GATEWAY_STATUS_CODE] == 200
    assert [entry["event"] for entry in logs] == ["gateway call", "gateway response"]


def test_gateway_wrapper_exception_propagates_and_is_logged(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """An SDK exception inside ``gateway()`` propagates unchanged, with an ERROR line and span status."""
    tracer_provider, exporter = provider
    with (
        capture_logs() as logs,
        pytest.raises(TimeoutError, match="sdk gave up"),
        gateway("sms", operation="messages.create", params={"to": "+15550100123"}, tracer_provider=tracer_provider),
    ):
        raise TimeoutError("sdk gave up")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[attr.GATEWAY_ERROR_CODE] == "timeout"
    assert span.attributes[attr.GATEWAY_PARAMS] == '{"to":"*******0123"}'
    (failed,) = [entry for entry in logs if entry["event"] == "gateway call failed"]
    assert (failed["log_level"], failed["error_code"]) == ("error", "timeout")


def test_gateway_wrapper_async_and_failed_status(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """``async with gateway(...)`` works the same; a 4xx ``record_response`` logs a WARNING."""
    tracer_provider, exporter = provider

    async def run() -> None:
        async with gateway("payment", operation="refund", tracer_provider=tracer_provider) as call:
            await asyncio.sleep(0)
            call.record_response(409)

    with capture_logs() as logs:
        asyncio.run(run())
    (span,) = exporter.get_finished_spans()
    assert span.name == "payment refund"
    assert span.attributes[attr.GATEWAY_ERROR_CODE] == "http_409"
    (failed,) = [entry for entry in logs if entry["event"] == "gateway call failed"]
    assert failed["log_level"] == "warning"


@pytest.fixture(autouse=True)
def _no_observers_left() -> Iterator[None]:
    yield
    hooks.uninstall_failure_observers()


def test_gateway_wrapper_uses_the_configured_redactor(provider: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """``gateway()`` redacts with configure()'s one redactor (its LOGKIT_REDACT_KEYS), no second reader of the env."""
    tracer_provider, exporter = provider
    with (
        capture(redact_keys=frozenset({"tax_id"})),
        gateway("payment", operation="payout", params={"tax_id": "DE123"}, tracer_provider=tracer_provider),
    ):
        pass
    assert exporter.get_finished_spans()[0].attributes[attr.GATEWAY_PARAMS] == f'{{"tax_id":"{REDACTED}"}}'
