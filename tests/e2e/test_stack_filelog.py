"""The stdout-scrape path: the app's JSON lines read from a file by the filelog overlay.

- with ``OTEL_LOGS_EXPORTER=none`` every line reaches Loki exactly once, span context on the
  record, across a collector SIGKILL and restart (file_storage checkpoints, synchronous emitter,
  persistent exporter queue);
- the records it makes are the OTLP path's records, field by field.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import records
from tests.e2e.backends.loki import LokiEntry, LokiStandIn
from tests.e2e.harness import BASE_CONFIG, OVERLAYS, ROOT, child_env, drive_shop, request, wait_until
from tests.e2e.ops_stack import FEATURE_GATES, FILELOG_OVERLAY, FileCollector, ShopProcess, filelog_env

pytestmark = pytest.mark.e2e

# Metadata only one path can carry: the SDK's instrumentation scope and the exporting process.
OTLP_ONLY = frozenset({"scope_name", "scope_version", "flags", "service_instance_id"})


def _stdout_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _shop_entries(loki: LokiStandIn) -> list[LokiEntry]:
    with loki.lock:
        return [e for e in loki.entries if e.labels.get("service_name") == "shop"]


def test_every_stdout_line_arrives_once_across_a_collector_sigkill(otelcol_bin: Path, tmp_path: Path) -> None:
    """Lines written before, during and after a SIGKILL of the collector arrive exactly once."""
    loki = LokiStandIn()
    loki.start()
    app_log = tmp_path / "shop.log"
    env = filelog_env(
        tmp_path / "storage",
        loki,
        app=[app_log],
        nginx=[tmp_path / "no-nginx.json"],
        postgresql=[tmp_path / "no-pg.json"],
    )
    collector = FileCollector(otelcol_bin, (), env, tmp_path / "collector.log")
    shop = ShopProcess(
        app_log,
        {
            "OTEL_SERVICE_NAME": "shop",
            "LOGKIT_ENV": "test",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_TRACES_EXPORTER": "none",
        },
    )
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            request("GET", f"{shop.url}/products/99")  # a request line and an access line
            request("POST", f"{shop.url}/login", {"username": "ann", "password": "correct horse"})
            time.sleep(0.005)

    driver = threading.Thread(target=traffic, daemon=True)
    try:
        collector.start()
        shop.start()
        driver.start()
        wait_until(lambda: len(_shop_entries(loki)) > 200, 30, what="first lines in Loki")
        collector.kill()  # SIGKILL mid-stream: no shutdown, no flush
        time.sleep(1.0)  # the app keeps writing while no collector runs
        collector.start()
        time.sleep(2.0)
        stop.set()
        driver.join(15)
        shop.stop()
        expected = [records.from_stdout(line) for line in _stdout_lines(app_log)]
        wait_until(lambda: len(_shop_entries(loki)) >= len(expected), 60, what="every line in Loki")
        time.sleep(2.0)  # let a duplicate arrive before comparing
        received = [records.from_loki(e) for e in _shop_entries(loki)]
        assert "" == records.delivery_report(expected, received)
        in_request = [r for r in received if r[records.FIELDS.index("request_id")]]
        assert len(in_request) > 100
        assert all(r[records.FIELDS.index("trace_id")] and r[records.FIELDS.index("span_id")] for r in in_request)
    finally:
        stop.set()
        shop.stop()
        collector.stop()
        loki.stop()


def test_filelog_records_are_the_otlp_records_field_by_field(otelcol_bin: Path, tmp_path: Path) -> None:
    """The same app lines, once over OTLP and once scraped from stdout, are stored identically."""
    loki = LokiStandIn()
    loki.start()
    app_log = tmp_path / "shop.log"
    env = filelog_env(
        tmp_path / "storage",
        loki,
        app=[app_log],
        nginx=[tmp_path / "no-nginx.json"],
        postgresql=[tmp_path / "no-pg.json"],
    )
    collector = FileCollector(otelcol_bin, (), env, tmp_path / "collector.log")
    shop = ShopProcess(
        app_log,
        {
            "OTEL_SERVICE_NAME": "shop",
            "LOGKIT_ENV": "test",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http_url,
        },
    )
    try:
        collector.start()
        shop.start()
        drive_shop(shop.url, rounds=1)
        shop.stop()
        lines = _stdout_lines(app_log)
        wait_until(lambda: len(_shop_entries(loki)) >= 2 * len(lines), 60, what="both copies in Loki")
        time.sleep(1.0)
        entries = _shop_entries(loki)
    finally:
        shop.stop()
        collector.stop()
        loki.stop()
    otlp = [e for e in entries if e.metadata.get("scope_name")]
    scraped = [e for e in entries if not e.metadata.get("scope_name")]
    assert len(lines) == len(otlp) == len(scraped)

    def comparable(entry: LokiEntry) -> tuple[Any, ...]:
        metadata = {k: v for k, v in entry.metadata.items() if k not in OTLP_ONLY and not k.startswith("telemetry_sdk")}
        return (
            entry.timestamp_ns // 1_000_000,
            entry.line,
            tuple(sorted(entry.labels.items())),
            tuple(sorted(metadata.items())),
        )

    only_otlp = Counter(map(comparable, otlp)) - Counter(map(comparable, scraped))
    only_scraped = Counter(map(comparable, scraped)) - Counter(map(comparable, otlp))
    assert ([], []) == (list(only_otlp)[:2], list(only_scraped)[:2])


def _app_line(message: str, **fields: Any) -> str:
    line = {
        "message": message,
        "logger": "shop.k8s",
        "level": "WARNING",
        "service": "shop",
        "env": "prod",
        "timestamp": "2026-12-01T09:00:00.123Z",
        **fields,
    }
    return json.dumps(line, separators=(",", ":"))


def test_container_runtime_files_are_unwrapped(otelcol_bin: Path, tmp_path: Path) -> None:
    """CRI lines (a partial line recombined) and Docker json-file lines give the app's own records."""
    loki = LokiStandIn()
    loki.start()
    pods = tmp_path / "pods"
    cri = pods / "shop-ns_shop-7d9f_0b5e8c1a-1111-2222-3333-444455556666" / "shop" / "0.log"
    docker = pods / "shop-ns_shop-aa11_9f5e8c1a-1111-2222-3333-444455556666" / "shop" / "1.log"
    cri.parent.mkdir(parents=True)
    docker.parent.mkdir(parents=True)
    ids = {"request_id": "req-cri-1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
    long_line = _app_line("split by the runtime", **ids, order_id=7)
    cri.write_text(
        f"2026-12-01T09:00:00.200000000Z stdout F {_app_line('from a CRI file', **ids)}\n"
        f"2026-12-01T09:00:00.300000000Z stdout P {long_line[:40]}\n"
        f"2026-12-01T09:00:00.300000001Z stdout F {long_line[40:]}\n"
    )
    docker.write_text(
        json.dumps(
            {"log": _app_line("from a Docker file", **ids) + "\n", "stream": "stdout", "time": "2026-12-01T09:00:00.4Z"}
        )
        + "\n"
    )
    env = filelog_env(
        tmp_path / "storage",
        loki,
        app=[pods / "*" / "*" / "*.log"],
        nginx=[tmp_path / "n"],
        postgresql=[tmp_path / "p"],
    )
    collector = FileCollector(otelcol_bin, (), env, tmp_path / "collector.log")
    try:
        collector.start()
        wait_until(lambda: len(_shop_entries(loki)) >= 3, 30, what="the container lines in Loki")
        time.sleep(1.0)
        entries = {e.line: e for e in _shop_entries(loki)}
    finally:
        collector.stop()
        loki.stop()
    assert {"from a CRI file", "split by the runtime", "from a Docker file"} == set(entries)
    for entry in entries.values():
        assert "req-cri-1" == entry.metadata["request_id"]
        assert (ids["trace_id"], ids["span_id"]) == (entry.metadata["trace_id"], entry.metadata["span_id"])
        assert ("WARNING", "13") == (entry.metadata["severity_text"], entry.metadata["severity_number"])
        assert "shop-ns" == entry.labels["k8s_namespace_name"]
        assert "shop" == entry.labels["k8s_container_name"]
        assert "2026-12-01T09:00:00.123Z" == records.iso_ms(entry.timestamp_ns)  # the app's time, not the runtime's
    assert "shop-7d9f" == entries["from a CRI file"].labels["k8s_pod_name"]
    assert "7" == entries["split by the runtime"].metadata["order_id"]
    assert "shop-aa11" == entries["from a Docker file"].labels["k8s_pod_name"]


def _validate(binary: Path, overlays: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    args = [str(binary), FEATURE_GATES, "validate", "--config", str(BASE_CONFIG)]
    for name in overlays:
        args += ["--config", str(OVERLAYS[name])]
    args += ["--config", str(FILELOG_OVERLAY)]
    return subprocess.run(
        args,
        cwd=ROOT,
        env=child_env(LOGKIT_COLLECTOR_STORAGE_DIR=str(tmp_path), **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_overlay_validates_with_loki_and_with_other_backends(otelcol_bin: Path, tmp_path: Path) -> None:
    """Defaults go to Loki; LOGKIT_FILELOG_EXPORTERS/PROCESSORS point it at other backends."""
    assert 0 == _validate(otelcol_bin, ["loki"], tmp_path).returncode
    others = _validate(
        otelcol_bin,
        ["cloudwatch", "elasticsearch"],
        tmp_path,
        LOGKIT_FILELOG_EXPORTERS="[awscloudwatchlogs, elasticsearch]",
        LOGKIT_FILELOG_PROCESSORS="[memory_limiter, resource, transform/redact, redaction]",
        LOGKIT_CLOUDWATCH_LOG_GROUP="g",
        LOGKIT_CLOUDWATCH_LOG_STREAM="s",
        AWS_REGION="eu-west-1",
    )
    assert 0 == others.returncode, others.stderr
    without_loki = _validate(otelcol_bin, ["cloudwatch"], tmp_path, AWS_REGION="eu-west-1")
    assert 0 != without_loki.returncode
    assert "otlp_http/loki" in without_loki.stderr or "transform/loki" in without_loki.stderr


def test_the_overlay_uses_no_deprecated_component_name(tmp_path: Path) -> None:
    """v0.15x names: file_log (not filelog), otlp_http; file_storage/filelog for the checkpoints."""
    import yaml

    config = yaml.safe_load(FILELOG_OVERLAY.read_text())
    assert {"file_log/app", "file_log/nginx", "file_log/postgresql"} == set(config["receivers"])
    assert {"file_storage/filelog"} == set(config["extensions"])
    assert config["extensions"]["file_storage/filelog"]["fsync"] is True
    assert all(r["storage"] == "file_storage/filelog" for r in config["receivers"].values())
