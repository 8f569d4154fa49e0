"""The collector masks secrets an app let through, and leaves timestamps and ids alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.backends.loki import LokiEntry, LokiStandIn
from tests.e2e.harness import Collector, wait_until
from tests.e2e.otlp import logs_request, post_logs

pytestmark = pytest.mark.e2e

SERVICE = "redaction-probe"


@pytest.fixture(scope="module")
def probe(otelcol_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, LokiStandIn]]:
    """A collector with the Loki overlay in front of a Loki stand-in."""
    tmp = tmp_path_factory.mktemp("redaction")
    loki = LokiStandIn()
    loki.start()
    env = {"LOGKIT_COLLECTOR_STORAGE_DIR": str(tmp / "queue"), "LOGKIT_LOKI_ENDPOINT": f"{loki.url}/otlp"}
    collector = Collector(otelcol_bin, ["loki"], env, tmp / "collector.log")
    try:
        collector.start()
        yield collector, loki
    finally:
        collector.stop()
        loki.stop()


def _through(probe: tuple[Collector, LokiStandIn], body: str, **attrs: object) -> LokiEntry:
    """Send one record through the collector and return what Loki stored for it."""
    collector, loki = probe
    marker = f"probe-{len(loki.entries)}-{id(attrs)}"
    assert post_logs(collector.otlp_http_url, logs_request(SERVICE, [body], [{"probe": marker, **attrs}])) == 200

    def stored() -> LokiEntry | None:
        with loki.lock:
            return next((e for e in loki.entries if e.metadata.get("probe") == marker), None)

    return wait_until(stored, timeout=20, what=f"record {marker} in Loki")


BODY_CASES = [
    ("charged 4111 1111 1111 1111 ok", "charged ****1111 ok"),
    ("charged 4111-1111-1111-1111 ok", "charged ****1111 ok"),
    ("charged 5555555555554444 ok", "charged ****4444 ok"),
    ("amex 3782 822463 10005 ok", "amex ****0005 ok"),
    ("header Authorization: Bearer abc.DEF-123_x ok", "header Authorization: Bearer **** ok"),
    ("GET /cb?code=s3cr3t&page=2", "GET /cb?code=****&page=2"),
    ("card[number]=4000056655665556&qty=1", "card[number]=****&qty=1"),
]


@pytest.mark.parametrize(
    ("body", "expected"), BODY_CASES, ids=[c[0].split()[0] + str(i) for i, c in enumerate(BODY_CASES)]
)
def test_secret_in_a_body_is_masked(probe: tuple[Collector, LokiStandIn], body: str, expected: str) -> None:
    """Card numbers, bearer tokens and secret parameters in a body are masked, keeping last four digits."""
    assert expected == _through(probe, body).line


SAFE_BODIES = [
    "created_at=1763925600000 done",
    "nanos 1763925600123456789 done",
    "trace 4111111111111111abcdef0123456789 done",
    "uuid 41111111-1111-4111-8111-111111111111 done",
    "order 1001 qty 3 amount 1290",
]


@pytest.mark.parametrize("body", SAFE_BODIES, ids=["epoch_ms", "epoch_ns", "hex_id", "uuid", "small_numbers"])
def test_timestamps_and_ids_in_a_body_are_kept(probe: tuple[Collector, LokiStandIn], body: str) -> None:
    """Epoch timestamps, hex ids, UUIDs and ordinary numbers pass unmasked."""
    assert body == _through(probe, body).line


def test_sensitive_keys_are_masked_and_ids_kept_in_attributes(probe: tuple[Collector, LokiStandIn]) -> None:
    """Values under sensitive keys are masked; timestamps and ids under other keys are not."""
    entry = _through(
        probe,
        "attributes probe",
        password="hunter2",
        authorization="Basic dXNlcjpwYXNz",
        **{"card[number]": "4242424242424242", "http.request.header.cookie": "session=abc"},
        note="card 5555-5555-5555-4444 used",
        url="https://shop.example/cb?token=abc123&page=2",
        created_at_ms=1763925600000,
        trace_ref="4bf92f3577b34da6a3ce929d0e0e4736",
        request_id="0af7651916cd43dd8448eb211c80319c",
        order_id=1001,
    )
    meta = entry.metadata
    for key in ("password", "authorization", "card_number_", "http_request_header_cookie"):
        assert "hunter2" not in meta[key]
        assert "dXNlcjpwYXNz" not in meta[key]
        assert "424242424242" not in meta[key]
        assert "session=abc" not in meta[key]
    assert "****4444" in meta["note"]
    assert "5555-5555" not in meta["note"]
    assert meta["url"] == "https://shop.example/cb?token=****&page=2"
    assert meta["created_at_ms"] == "1763925600000"
    assert meta["trace_ref"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert meta["request_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert meta["order_id"] == "1001"
