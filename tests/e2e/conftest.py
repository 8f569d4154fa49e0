"""Fixtures for the end-to-end tests: the collector binary, backends, and one shop run.

Every test here is marked ``e2e`` (``make e2e``). The binary is ``$OTELCOL_BIN`` or
``bin/otelcol-logkit`` (``make collector``). Every process and server is stopped in a finally.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import records
from tests.e2e.harness import ROOT, Collector, ShopRun, drive_shop
from tests.e2e.stack import Backends

ALL_OVERLAYS = ("loki", "cloudwatch", "elasticsearch")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e as ``e2e``, even one that forgot its ``pytestmark``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def otelcol_bin() -> Path:
    """The collector binary under test."""
    binary = Path(os.environ.get("OTELCOL_BIN") or ROOT / "bin" / "otelcol-logkit")
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"collector binary {binary} not found: run `make collector` or set OTELCOL_BIN")
    return binary


@pytest.fixture
def backends() -> Iterator[Backends]:
    """Fresh Loki, Elasticsearch and CloudWatch stand-ins for one test."""
    stack = Backends()
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@dataclass
class ShopDelivery:
    """One shop run through one collector into all three backends."""

    lines: list[dict[str, Any]]
    expected: list[records.Record]
    received: dict[str, list[records.Record]]
    backends: Backends
    collector: Collector


@pytest.fixture(scope="module")
def shop_delivery(otelcol_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopDelivery]:
    """Run the shop under otel-logkit-instrument through a collector with all three overlays."""
    tmp = tmp_path_factory.mktemp("delivery")
    stack = Backends()
    stack.start()  # first: the collector's environment names the ports the backends got
    collector = Collector(otelcol_bin, ALL_OVERLAYS, stack.collector_env(tmp / "queue"), tmp / "collector.log")
    shop = ShopRun(collector.otlp_http_url)
    try:
        collector.start()
        shop.start()
        drive_shop(shop.url)
        lines = shop.stop()
        expected = [records.from_stdout(line) for line in lines]
        received = stack.wait_for(len(expected), timeout=60)
        yield ShopDelivery(lines, expected, received, stack, collector)
    finally:
        shop.kill()
        collector.stop()
        stack.stop()
