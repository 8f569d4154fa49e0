"""Gateway calls through real requests and httpx, with the official instrumentors active."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

from otel_logkit import _failsafe, context
from otel_logkit import attributes as attr
from otel_logkit.config import Settings
from otel_logkit.gateways.hooks import install_failure_observers, instrument_kwargs, uninstall_failure_observers
from otel_logkit.redact import REDACTED, RedactingSpanExporter, Redactor
from tests.fakes.gateways import FakePaymentGateway, FakeSmsGateway

CARD = "4242424242424242"
PHONE = "+15550100123"


@pytest.fixture
def payment() -> Iterator[FakePaymentGateway]:
    """A fake payment gateway on 127.0.0.1 (slow path answers after 1 s)."""
    with FakePaymentGateway(slow_seconds=1.0, max_lifetime=60) as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def sms() -> Iterator[FakeSmsGateway]:
    """A fake SMS gateway on 127.0.0.1."""
    with FakeSmsGateway(slow_seconds=1.0, max_lifetime=60) as server:
        yield server  # type: ignore[misc]


Instrument = Callable[[str], InMemorySpanExporter]


@pytest.fixture
def instrument() -> Iterator[Instrument]:
    """Instrument requests and httpx with otel-logkit's hooks for a ``LOGKIT_GATEWAYS`` value."""
    done: list[Any] = []

    def make(gateways: str) -> InMemorySpanExporter:
        settings = Settings.from_env({"LOGKIT_GATEWAYS": gateways, "LOGKIT_BODY_SUMMARY_MAX": "256"})
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        kwargs = instrument_kwargs(settings, Redactor.from_settings(settings))
        install_failure_observers()  # configure() does this when LOGKIT_GATEWAYS names a host
        RequestsInstrumentor().instrument(tracer_provider=provider, **kwargs["requests"])
        HTTPXClientInstrumentor().instrument(tracer_provider=provider, **kwargs["httpx"])
        done.extend([RequestsInstrumentor(), HTTPXClientInstrumentor()])
        return exporter

    yield make
    for instrumentor in done:
        instrumentor.uninstrument()
    uninstall_failure_observers()


def _only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_requests_payment_call_gets_gateway_span_and_redacted_params(
    instrument: Instrument, payment: FakePaymentGateway
) -> None:
    """A JSON charge through requests: gateway span name, kind, redacted params, status, DEBUG lines."""
    exporter = instrument("payment=127.0.0.1")
    with capture_logs() as logs:
        response = requests.post(
            payment.url + "/v1/charges?expand=customer",
            json={"amount": 1999, "currency": "eur", "card": {"number": CARD, "cvc": "123"}},
            timeout=5,
        )
    assert response.status_code == 200
    span = _only_span(exporter)
    assert span.name == "payment POST /v1/charges"
    assert span.attributes[attr.GATEWAY_KIND] == "payment"
    assert span.attributes[attr.GATEWAY_OPERATION] == "POST /v1/charges"
    params = span.attributes[attr.GATEWAY_PARAMS]
    assert params.startswith("?expand=customer {")
    assert "****4242" in params
    assert CARD not in params
    assert f'"cvc":"{REDACTED}"' in params
    assert span.attributes[attr.GATEWAY_STATUS_CODE] == 200
    assert span.attributes["http.status_code"] == 200  # the official attribute is kept
    assert payment.requests[-1].json()["card"]["number"] == CARD  # the app's call is unchanged
    (call,) = _events(logs, "gateway call")
    assert (call["log_level"], call["gateway"], call["params"]) == ("debug", "payment", params)
    (answer,) = _events(logs, "gateway response")
    assert (answer["status_code"], answer["operation"]) == (200, "POST /v1/charges")


def test_requests_sms_form_keeps_only_message_length(instrument: Instrument, sms: FakeSmsGateway) -> None:
    """An SMS form body: recipient masked to its last digits, message text reduced to its length."""
    exporter = instrument("sms=127.0.0.1")
    requests.post(
        sms.url + "/2010-04-01/Accounts/AC1/Messages.json",
        data={"To": PHONE, "From": "ShopCo", "Body": "Your code is 482913"},
        timeout=5,
    )
    span = _only_span(exporter)
    assert span.name == "sms POST /2010-04-01/Accounts/AC1/Messages.json"
    assert span.attributes[attr.GATEWAY_PARAMS] == "To=*******0123&From=ShopCo&Body=[19 chars]"
    assert sms.requests[-1].form["Body"] == ["Your code is 482913"]


def test_requests_declined_charge_logs_warning_with_error_code(
    instrument: Instrument, payment: FakePaymentGateway
) -> None:
    """A 402 answer: span status ERROR, ``error_code`` attribute, one WARNING line."""
    exporter = instrument("payment=127.0.0.1")
    with capture_logs() as logs:
        response = requests.post(payment.url + "/v1/charges", data={"card[number]": "4000000000000002"}, timeout=5)
    assert response.status_code == 402
    span = _only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[attr.GATEWAY_ERROR_CODE] == "http_402"
    assert span.attributes["error.type"] == "402"
    (failed,) = _events(logs, "gateway call failed")
    assert (failed["log_level"], failed["error_code"], failed["status_code"]) == ("warning", "http_402", 402)
    assert "4000000000000002" not in str(failed)


def test_requests_server_error_logs_error(instrument: Instrument, payment: FakePaymentGateway) -> None:
    """A 5xx answer is logged at ERROR with ``error_code`` ``http_500``."""
    instrument("payment=127.0.0.1")
    with capture_logs() as logs:
        assert requests.get(payment.url + "/v1/fail", timeout=5).status_code == 500
    (failed,) = _events(logs, "gateway call failed")
    assert (failed["log_level"], failed["error_code"]) == ("error", "http_500")


def test_requests_timeout_is_recorded_and_propagates_unchanged(
    instrument: Instrument, payment: FakePaymentGateway
) -> None:
    """A client timeout raises the same exception; the span and an ERROR line say ``timeout``."""
    exporter = instrument("payment=127.0.0.1")
    with capture_logs() as logs, pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(payment.url + "/v1/slow", json={"amount": 1}, timeout=0.2)
    span = _only_span(exporter)
    assert span.name == "payment POST /v1/slow"
    assert span.attributes[attr.GATEWAY_ERROR_CODE] == "timeout"
    assert span.status.status_code is StatusCode.ERROR
    (failed,) = _events(logs, "gateway call failed")
    assert (failed["log_level"], failed["error_code"], failed["error_type"]) == ("error", "timeout", "ReadTimeout")


def test_requests_connection_refused_is_recorded(instrument: Instrument) -> None:
    """A refused connection raises as usual and is logged with ``connection_error``."""
    exporter = instrument("payment=127.0.0.1")
    with capture_logs() as logs, pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"http://127.0.0.1:{_closed_port()}/v1/charges", json={}, timeout=2)
    assert _only_span(exporter).attributes[attr.GATEWAY_ERROR_CODE] == "connection_error"
    (failed,) = _events(logs, "gateway call failed")
    assert failed["error_code"] == "connection_error"


def test_request_id_reaches_the_server(instrument: Instrument, payment: FakePaymentGateway) -> None:
    """The current request id is sent in ``X-Request-ID``; a caller's own header wins."""
    instrument("payment=127.0.0.1")
    token = context.request_id.set("req-abc")
    try:
        requests.get(payment.url + "/v1/charges/ch_1", timeout=5)
        requests.get(payment.url + "/v1/charges/ch_2", headers={"x-request-id": "mine"}, timeout=5)
        httpx.get(payment.url + "/v1/charges/ch_3", timeout=5)
    finally:
        context.request_id.reset(token)
    requests.get(payment.url + "/v1/charges/ch_4", timeout=5)
    sent = [recorded.headers.get("x-request-id") for recorded in payment.requests]
    assert sent == ["req-abc", "mine", "req-abc", None]


def test_other_hosts_get_plain_spans_and_no_capture(instrument: Instrument, payment: FakePaymentGateway) -> None:
    """Hosts outside ``LOGKIT_GATEWAYS`` keep the official span only: no name change, no params, no lines."""
    exporter = instrument("payment=api.stripe.com")
    with capture_logs() as logs:
        requests.post(payment.url + "/v1/charges", json={"card": {"number": CARD}}, timeout=5)
    span = _only_span(exporter)
    assert span.name == "POST"
    assert not any(key.startswith("otel_logkit.gateway") for key in span.attributes)
    assert [] == [entry for entry in logs if entry["event"].startswith("gateway")]


def test_query_secret_redacted_in_params_and_in_exported_url(
    instrument: Instrument, payment: FakePaymentGateway
) -> None:
    """``?api_key=`` is masked in the params summary and, through the exporter, in ``http.url``."""
    exporter = instrument("payment=127.0.0.1")
    requests.get(payment.url + "/v1/charges/ch_1?api_key=sk_live_abc&limit=3", timeout=5)
    span = _only_span(exporter)
    assert span.attributes[attr.GATEWAY_PARAMS] == f"?api_key={REDACTED}&limit=3"
    sink = InMemorySpanExporter()
    RedactingSpanExporter(sink, Redactor()).export([span])
    assert sink.get_finished_spans()[0].attributes["http.url"].endswith(f"?api_key={REDACTED}&limit=3")


def test_httpx_sync_payment_call(instrument: Instrument, payment: FakePaymentGateway) -> None:
    """The same gateway span through a sync httpx client, including the JSON body summary."""
    exporter = instrument("payment=127.0.0.1")
    with httpx.Client(timeout=5) as client:
        assert client.post(payment.url + "/v1/refunds", json={"charge": "ch_1", "amount": 500}).status_code == 200
    span = _only_span(exporter)
    assert span.name == "payment POST /v1/refunds"
    assert span.attributes[attr.GATEWAY_PARAMS] == '{"charge":"ch_1","amount":500}'
    assert span.attributes[attr.GATEWAY_STATUS_CODE] == 200


def test_httpx_sync_timeout(instrument: Instrument, payment: FakePaymentGateway) -> None:
    """An httpx timeout raises ``httpx.ReadTimeout`` unchanged and is recorded as ``timeout``."""
    exporter = instrument("payment=127.0.0.1")
    with capture_logs() as logs, pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.2) as client:
        client.post(payment.url + "/v1/slow", json={"amount": 1})
    assert _only_span(exporter).attributes[attr.GATEWAY_ERROR_CODE] == "timeout"
    assert _events(logs, "gateway call failed")[0]["error_code"] == "timeout"


def test_httpx_async_sms_calls(instrument: Instrument, sms: FakeSmsGateway) -> None:
    """Async httpx: success with redacted form, a 503 logged at ERROR, a refused connection."""
    exporter = instrument("sms=127.0.0.1")
    refused = f"http://127.0.0.1:{_closed_port()}/Messages.json"

    async def run() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            ok = await client.post(
                sms.url + "/2010-04-01/Accounts/AC1/Messages.json", data={"To": PHONE, "Body": "code 1234"}
            )
            assert ok.status_code == 201
            assert (await client.post(sms.url + "/fail", data={"To": PHONE})).status_code == 503
            with pytest.raises(httpx.ConnectError):
                await client.post(refused, data={"To": PHONE})

    with capture_logs() as logs:
        asyncio.run(run())
    spans = {span.name: span for span in exporter.get_finished_spans()}
    sent = spans["sms POST /2010-04-01/Accounts/AC1/Messages.json"]
    assert sent.attributes[attr.GATEWAY_PARAMS] == "To=*******0123&Body=[9 chars]"
    assert spans["sms POST /fail"].attributes[attr.GATEWAY_ERROR_CODE] == "http_503"
    assert spans["sms POST /Messages.json"].attributes[attr.GATEWAY_ERROR_CODE] == "connection_error"
    codes = [(entry["log_level"], entry["error_code"]) for entry in _events(logs, "gateway call failed")]
    assert codes == [("error", "http_503"), ("error", "connection_error")]
    assert PHONE not in str(logs)


class _BrokenRedactor(Redactor):
    def summarize_body(self, body: bytes | str | None, content_type: str | None, *, sms: bool = False) -> str:
        raise RuntimeError("redactor bug")


def test_hook_failure_never_reaches_the_app(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, payment: FakePaymentGateway
) -> None:
    """Without the test switch, a broken hook leaves the call intact, marks the span and is reported once."""
    monkeypatch.setattr(_failsafe, "raise_errors", False)
    _failsafe.reset()
    settings = Settings.from_env({"LOGKIT_GATEWAYS": "payment=127.0.0.1"})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    kwargs = instrument_kwargs(settings, _BrokenRedactor())
    install_failure_observers()
    RequestsInstrumentor().instrument(tracer_provider=provider, **kwargs["requests"])
    try:
        response = requests.post(payment.url + "/v1/charges", json={"amount": 1}, timeout=5)
    finally:
        RequestsInstrumentor().uninstrument()
        uninstall_failure_observers()
    assert response.status_code == 200
    assert payment.requests[-1].json() == {"amount": 1}
    assert _only_span(exporter).attributes[attr.HOOK_ERROR] == "RuntimeError"
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("otel-logkit failed in")]
    assert 1 == len(reports)
    assert "gateway hook requests.request_hook" in reports[0]


def test_concurrent_calls_with_tracing_off_keep_their_own_state(payment: FakePaymentGateway) -> None:
    """Non-recording spans are all the same object; each thread's call still logs its own outcome."""
    from concurrent.futures import ThreadPoolExecutor

    from opentelemetry.trace import NoOpTracerProvider

    settings = Settings.from_env({"LOGKIT_GATEWAYS": "payment=127.0.0.1"})
    kwargs = instrument_kwargs(settings, Redactor.from_settings(settings))
    install_failure_observers()
    RequestsInstrumentor().instrument(tracer_provider=NoOpTracerProvider(), **kwargs["requests"])
    paths = ["/v1/fail", "/v1/refunds"] * 10
    try:
        with capture_logs() as logs, ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda path: requests.post(payment.url + path, timeout=5).status_code, paths))
    finally:
        RequestsInstrumentor().uninstrument()
        uninstall_failure_observers()
    assert statuses == [500, 200] * 10
    answers = sorted((entry["operation"], entry["status_code"]) for entry in _events(logs, "gateway response"))
    assert answers == sorted([("POST /v1/fail", 500), ("POST /v1/refunds", 200)] * 10)
    failed = {entry["operation"] for entry in _events(logs, "gateway call failed")}
    assert failed == {"POST /v1/fail"}
