"""Lose nothing: a 30 s backend outage, and a SIGKILLed collector restarted on its queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import records
from tests.e2e.harness import Collector, ShopRun, drive_shop
from tests.e2e.stack import Backends

pytestmark = pytest.mark.e2e

ALL_OVERLAYS = ("loki", "cloudwatch", "elasticsearch")
OUTAGE_SECONDS = 30.0


def _run_shop(collector: Collector) -> list[records.Record]:
    """Drive the shop through ``collector`` and return the records it printed."""
    shop = ShopRun(collector.otlp_http_url)
    try:
        shop.start()
        drive_shop(shop.url, rounds=2)
        lines = shop.stop()
    finally:
        shop.kill()
    failing = [line for line in lines if line.get("logger") == "otel_logkit" and "fail" in line["message"]]
    assert failing == [], "the collector must accept everything even while backends are down"
    return [records.from_stdout(line) for line in lines]


def _assert_delivered(backends: Backends, expected: list[records.Record], collector: Collector) -> None:
    received = backends.wait_for(len(expected), timeout=120)
    reports = {name: records.delivery_report(expected, got) for name, got in received.items()}
    assert reports == dict.fromkeys(received, ""), collector.log_tail()


def test_a_30s_outage_of_every_backend_loses_nothing(otelcol_bin: Path, backends: Backends, tmp_path: Path) -> None:
    """Backends down for 30 s while the app logs; once back, every line arrives exactly once."""
    collector = Collector(otelcol_bin, ALL_OVERLAYS, backends.collector_env(tmp_path / "queue"), tmp_path / "c.log")
    try:
        collector.start()
        backends.stop()
        down_since = time.monotonic()
        expected = _run_shop(collector)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
        assert "connection refused" in collector.log_tail(200)  # the exporters really hit the outage
        backends.elasticsearch.reject_next_items = 5  # and Elasticsearch comes back overloaded
        backends.start()
        _assert_delivered(backends, expected, collector)
        assert backends.elasticsearch.rejected_items == 5
    finally:
        collector.stop()


def _restart_with_queue(
    otelcol_bin: Path, backends: Backends, tmp_path: Path, interrupt: Callable[[Collector], None], lost_all: bool
) -> None:
    """Fill the queue during an outage, interrupt the collector, restart it: everything arrives once."""
    env = backends.collector_env(tmp_path / "queue")
    first = Collector(otelcol_bin, ALL_OVERLAYS, env, tmp_path / "first.log")
    second = Collector(otelcol_bin, ALL_OVERLAYS, env, tmp_path / "second.log")
    try:
        first.start()
        backends.stop()
        expected = _run_shop(first)
        time.sleep(1.0)
        interrupt(first)
        backends.start()
        if lost_all:
            assert {name: len(got) for name, got in backends.received().items()} == {
                "loki": 0,
                "elasticsearch": 0,
                "cloudwatch": 0,
            }
        second.start()
        _assert_delivered(backends, expected, second)
    finally:
        first.kill()
        second.stop()


def test_a_sigkilled_collector_delivers_its_queue_after_restart(
    otelcol_bin: Path, backends: Backends, tmp_path: Path
) -> None:
    """Items accepted but not yet delivered survive SIGKILL in the file_storage queue."""
    _restart_with_queue(otelcol_bin, backends, tmp_path, Collector.kill, lost_all=True)


def test_a_collector_stopped_during_an_outage_delivers_its_queue_after_restart(
    otelcol_bin: Path, backends: Backends, tmp_path: Path
) -> None:
    """SIGTERM while backends are down (SIGKILL after a 10 s grace, as an orchestrator does) keeps the queue."""
    _restart_with_queue(otelcol_bin, backends, tmp_path, lambda c: c.stop(timeout=10), lost_all=False)
