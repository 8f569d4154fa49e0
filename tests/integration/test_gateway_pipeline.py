"""Gateway calls through the whole otel-logkit pipeline: stdout lines, exported records and spans."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from otel_logkit.gateways import parse_gateways
from otel_logkit.gateways.hooks import uninstall_failure_observers
from otel_logkit.testing import capture
from tests.fakes.gateways import FakePaymentGateway

CARD = "4242424242424242"


@pytest.fixture
def payment() -> Iterator[FakePaymentGateway]:
    """A fake payment gateway on 127.0.0.1."""
    with FakePaymentGateway(max_lifetime=60) as server:
        yield server  # type: ignore[misc]
    uninstall_failure_observers()


def test_gateway_lines_and_records_never_carry_the_card(payment: FakePaymentGateway) -> None:
    """With ``configure()`` wiring the hooks, stdout and the OTLP log bytes hold only the mask."""
    with capture(
        instrument=True, env="dev", log_level=logging.DEBUG, gateways=parse_gateways("payment=127.0.0.1")
    ) as captured:
        response = requests.post(payment.url + "/v1/charges", json={"amount": 500, "card": {"number": CARD}}, timeout=5)
        records = captured.log_records()
    assert response.status_code == 200
    lines = [line for line in captured.lines() if line["logger"] == "otel_logkit.gateways"]
    assert [line["message"] for line in lines] == ["gateway call", "gateway response"]
    assert '"number":"****4242"' in lines[0]["params"]
    assert "trace_id" in lines[0]
    assert CARD not in captured.text()
    assert CARD.encode() not in encode_logs(records).SerializeToString()
    assert any(span.name == "payment POST /v1/charges" for span in captured.spans())


def test_exported_spans_have_redacted_urls(payment: FakePaymentGateway) -> None:
    """The official ``http.url`` attribute carries ``?api_key=`` in clear; export must redact it."""
    with capture(instrument=True, gateways=parse_gateways("payment=127.0.0.1")) as captured:
        requests.get(payment.url + "/v1/charges/ch_1?api_key=sk_live_secret", timeout=5)
    assert b"sk_live_secret" not in encode_spans(captured.spans()).SerializeToString()
