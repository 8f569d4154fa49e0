"""The shop → otel-logkit-instrument → otelcol-logkit (span-metrics + Loki overlays) → a real Prometheus.

One run drives a known mix at a fixed rate — 300 requests over 75 s on three routes: a fast one, one
where every fourth request is a 500, one that takes 1.2 s — then evaluates every PromQL expression
of the dashboard and of the alert rules (Grafana's variables substituted) against Prometheus, and
parses every LogQL expression of the dashboard with Grafana's grammar, checking the names it uses
against what the Loki stand-in holds.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.backends.loki import LokiEntry, LokiStandIn
from tests.e2e.harness import ROOT, Collector, ShopRun, free_port, request, wait_until
from tests.e2e.prometheus import Prometheus

pytestmark = pytest.mark.e2e

DASHBOARD = ROOT / "collector" / "dashboards" / "otel-logkit.json"
RULES = ROOT / "collector" / "rules" / "otel-logkit.rules.yml"
LOGQL_CHECK = ROOT / "tests" / "e2e" / "logql" / "check.mjs"

RATE = 4.0  # requests per second, all routes together
REQUESTS = 300
FAST, FLAKY, SLOW = "/products", "/drills/flaky", "/drills/slow"
ROUTES = (FAST, FLAKY, SLOW)
FAIL_EVERY = 4  # every fourth request to FLAKY is a 500
SLOW_MS = 1200  # in the (1000, 2500] ms bucket
UNMATCHED = [f"/no/such/page-{i}" for i in range(10)]
SERVER = 'service_name="shop", span_kind="SPAN_KIND_SERVER"'
# What Grafana puts in place of its variables. $__rate_interval: 4 scrapes of a 15 s interval.
GRAFANA_VARIABLES = {"service": "shop", "route": ".*", "slow_ms": "1000", "__rate_interval": "1m"}


@dataclass
class MetricsRun:
    prometheus: Prometheus
    loki: list[LokiEntry]
    started: float  # after the warm-up was scraped, before the first measured request
    drive_end: float  # when the last measured request was sent
    settled: float  # when Prometheus held every measured request
    statuses: dict[str, list[int]]


def _path(route: str, i: int) -> str:
    if route == FLAKY:
        return f"{FLAKY}?fail={'true' if i % FAIL_EVERY == 0 else 'false'}"
    if route == SLOW:
        return f"{SLOW}?ms={SLOW_MS}"
    return FAST


def _drive(base_url: str) -> dict[str, list[int]]:
    """REQUESTS requests at RATE per second, the three routes in turn; statuses per route."""
    start = time.monotonic() + 0.5
    plan = [(start + n / RATE, ROUTES[n % 3], n // 3) for n in range(REQUESTS)]

    def one(slot: tuple[float, str, int]) -> tuple[str, int]:
        at, route, i = slot
        time.sleep(max(0.0, at - time.monotonic()))
        return route, request("GET", base_url + _path(route, i))

    statuses: dict[str, list[int]] = {route: [] for route in ROUTES}
    with ThreadPoolExecutor(max_workers=16) as pool:
        for route, status in pool.map(one, plan, timeout=REQUESTS / RATE + 60):
            statuses[route].append(status)
    return statuses


def _total(prometheus: Prometheus) -> float:
    routes = "|".join(ROUTES)
    samples = prometheus.query(f'sum(traces_span_metrics_calls_total{{{SERVER}, http_route=~"{routes}"}})', time.time())
    return float(samples[0]["value"][1]) if samples else 0.0


@pytest.fixture(scope="module")
def run(otelcol_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsRun]:
    tmp = tmp_path_factory.mktemp("metrics")
    loki = LokiStandIn()
    loki.start()
    exporter = f"127.0.0.1:{free_port()}"
    env = {
        "LOGKIT_COLLECTOR_STORAGE_DIR": str(tmp / "queue"),
        "LOGKIT_LOKI_ENDPOINT": f"{loki.url}/otlp",
        "LOGKIT_PROMETHEUS_EXPORTER_ENDPOINT": exporter,
    }
    collector = Collector(otelcol_bin, ("loki", "spanmetrics"), env, tmp / "collector.log")
    prometheus = Prometheus(exporter, tmp / "prometheus")
    shop = ShopRun(collector.otlp_http_url, app="examples.shop.drills:app", stdout_path=tmp / "shop.log")
    try:
        collector.start()
        prometheus.start()
        shop.start()
        # Warm-up: every series exists (and is scraped) before the measured window opens, so
        # that rate() and increase() count every measured request.
        warm = [FAST, f"{FLAKY}?fail=false", f"{FLAKY}?fail=true", f"{SLOW}?ms=1", *UNMATCHED]
        for path in warm:
            request("GET", shop.url + path)
        wait_until(lambda: _total(prometheus) >= 4, timeout=60, interval=1, what="warm-up series in Prometheus")
        time.sleep(3 * 2)  # a few more scrapes of the warm-up values
        started = time.time()
        statuses = _drive(shop.url)
        drive_end = time.time()
        wait_until(
            lambda: _total(prometheus) >= 4 + REQUESTS, timeout=60, interval=1, what="every request in Prometheus"
        )
        time.sleep(2 * 2)
        settled = time.time()
        shop.stop()
        wait_until(
            lambda: any(e.metadata.get("error_type") for e in loki.entries), timeout=30, what="error lines in Loki"
        )
        with loki.lock:
            entries = [e for e in loki.entries if e.labels.get("service_name") == "shop"]
        yield MetricsRun(prometheus, entries, started, drive_end, settled, statuses)
    finally:
        shop.kill()
        prometheus.stop()
        collector.stop()
        loki.stop()


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _targets(datasource: str) -> dict[str, str]:
    """Panel title → expression, for one data source type (every panel has one target)."""
    found: dict[str, str] = {}
    for panel in _dashboard()["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] == datasource:
                found[panel["title"]] = target["expr"]
    return found


def _substitute(expr: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables[name]

    substituted = re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
    assert "$" not in substituted, substituted
    return substituted


def _range(run: MetricsRun) -> str:
    return f"{math.ceil(run.settled - run.started)}s"


def _by_route(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {s["metric"].get("http_route", ""): float(s["value"][1]) for s in samples}


def _alerts() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def test_the_driven_mix_got_the_answers_it_asked_for(run: MetricsRun) -> None:
    """100 requests per route; a quarter of FLAKY's are 500s, the rest 200s."""
    assert {route: len(statuses) for route, statuses in run.statuses.items()} == dict.fromkeys(ROUTES, 100)
    assert run.statuses[FLAKY].count(500) == 25
    assert set(run.statuses[FAST]) == set(run.statuses[SLOW]) == {200}


def test_every_dashboard_promql_expression_returns_data(run: MetricsRun) -> None:
    """Each PromQL target, with Grafana's variables substituted, returns samples."""
    variables = {**GRAFANA_VARIABLES, "__range": _range(run)}
    empty = [
        title
        for title, expr in _targets("prometheus").items()
        if not run.prometheus.query(_substitute(expr, variables), run.drive_end)
    ]
    assert empty == []


def test_requests_per_second_matches_the_driven_rate(run: MetricsRun) -> None:
    """Over the last minute of the drive, QPS per route is RATE/3 and in total RATE (±15 %)."""
    expr = _substitute(_targets("prometheus")["Requests per second"], GRAFANA_VARIABLES)
    qps = _by_route(run.prometheus.query(expr, run.drive_end))
    print(f"QPS at the end of the drive (driven {RATE}/s): {qps}")
    assert sum(qps[r] for r in ROUTES) == pytest.approx(RATE, rel=0.15)
    for route in ROUTES:
        assert qps[route] == pytest.approx(RATE / 3, rel=0.2), route


def test_the_failing_route_is_first_in_the_top_5_with_its_error_share(run: MetricsRun) -> None:
    """Over the dashboard's range, FLAKY leads the top 5 at about 1/FAIL_EVERY."""
    variables = {**GRAFANA_VARIABLES, "__range": _range(run)}
    expr = _substitute(_targets("prometheus")["Error rate — top 5 routes"], variables)
    samples = run.prometheus.query(expr, run.settled)
    ranked = sorted(_by_route(samples).items(), key=lambda item: -item[1])
    print(f"error share over {_range(run)}: {ranked}")
    assert ranked[0][0] == FLAKY
    assert ranked[0][1] == pytest.approx(1 / FAIL_EVERY, abs=0.03)
    assert len(ranked) <= 5


def test_the_slow_route_p95_is_in_its_bucket(run: MetricsRun) -> None:
    """SLOW's P95 lies in (1000, 2500] ms, the fast route's under 100 ms."""
    expr = _substitute(_targets("prometheus")["Latency P95 by route"], GRAFANA_VARIABLES)
    p95 = _by_route(run.prometheus.query(expr, run.drive_end))
    print(f"P95 ms at the end of the drive: {p95}")
    assert 1000 < p95[SLOW] <= 2500
    assert p95[FAST] < 100


def test_the_heatmap_buckets_hold_the_slow_requests(run: MetricsRun) -> None:
    """The heatmap query's rows: the slow route's requests sit in the 2500 ms row, none at or below 1000 ms."""
    expr = _substitute(_targets("prometheus")["Latency P95 heatmap"], {**GRAFANA_VARIABLES, "route": SLOW})
    rows = {s["metric"]["le"]: float(s["value"][1]) for s in run.prometheus.query(expr, run.drive_end)}
    assert rows["1000"] == 0
    assert rows["2500"] > 0


def test_variable_queries_list_the_service_and_only_real_routes(run: MetricsRun) -> None:
    """label_values() of the service and route variables: shop, and route templates only."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    found = {}
    for name in ("service", "route"):
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variables[name]["query"])
        assert match, variables[name]["query"]
        selector = _substitute(match.group(1), GRAFANA_VARIABLES)
        found[name] = run.prometheus.label_values(match.group(2), selector)
    assert found["service"] == ["shop"]
    assert set(ROUTES) <= set(found["route"])
    # Unmatched paths are not routes: a 404 on an unknown path has no http_route at all.
    assert [r for r in found["route"] if "no/such" in r] == []
    unmatched = run.prometheus.query(f'traces_span_metrics_calls_total{{{SERVER}, http_route=""}}', run.settled)
    assert {s["metric"]["span_name"] for s in unmatched} == {"GET"}
    assert sum(float(s["value"][1]) for s in unmatched) == len(UNMATCHED)


def test_series_per_route_are_bounded(run: MetricsRun) -> None:
    """One route with one status costs 17 series: 1 calls + 14 buckets + sum + count."""
    expr = f'count by (http_route) ({{__name__=~"traces_span_metrics_.+", {SERVER}, http_route=~"{FAST}|{SLOW}"}})'
    counts = _by_route(run.prometheus.query(expr, run.settled))
    print(f"series per route: {counts}")
    assert counts == {FAST: 17, SLOW: 17}


def test_every_alert_rule_expression_evaluates_on_the_run(run: MetricsRun) -> None:
    """Error rate and P95 alerts select the failing and the slow route; no-requests is silent."""
    results = {name: run.prometheus.query(expr, run.drive_end) for name, expr in _alerts().items()}
    assert set(results) == {"LogkitRouteErrorRateHigh", "LogkitRouteLatencyP95High", "LogkitNoRequests"}
    assert [s["metric"]["http_route"] for s in results["LogkitRouteErrorRateHigh"]] == [FLAKY]
    assert [s["metric"]["http_route"] for s in results["LogkitRouteLatencyP95High"]] == [SLOW]
    assert results["LogkitNoRequests"] == []


def test_prometheus_loaded_the_rules_and_the_error_alert_is_pending(run: MetricsRun) -> None:
    """The real Prometheus evaluates all three rules without error; the error alert waits its `for:`."""
    groups = run.prometheus.api("rules")["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert {name: rule["health"] for name, rule in rules.items()} == dict.fromkeys(_alerts(), "ok")
    alerts = run.prometheus.api("alerts")["alerts"]
    pending = {(a["labels"]["alertname"], a["labels"].get("http_route")) for a in alerts if a["state"] == "pending"}
    assert ("LogkitRouteErrorRateHigh", FLAKY) in pending


# LogQL ----------------------------------------------------------------------------------------


def _logql_report(queries: list[str]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (LOGQL_CHECK.parent / "node_modules" / "@grafana" / "lezer-logql").is_dir():
        pytest.fail("the LogQL grammar is not installed: run `make logql-grammar` (needs node and npm)")
    result = subprocess.run(
        [node, str(LOGQL_CHECK)], input=json.dumps(queries), capture_output=True, text=True, timeout=60, check=True
    )
    report: list[dict[str, Any]] = json.loads(result.stdout)
    return report


def _loki_variables(run: MetricsRun) -> dict[str, str]:
    traced = next(e for e in run.loki if e.metadata.get("trace_id") and e.metadata.get("request_id"))
    return {
        **GRAFANA_VARIABLES,
        "__range": "5m",
        "trace_id": traced.metadata["trace_id"],
        "request_id": traced.metadata["request_id"],
    }


def test_every_dashboard_logql_expression_parses_with_grafanas_grammar(run: MetricsRun) -> None:
    """After substitution, no LogQL target has an error node in @grafana/lezer-logql's tree."""
    targets = _targets("loki")
    assert len(targets) >= 3
    queries = [_substitute(expr, _loki_variables(run)) for expr in targets.values()]
    report = _logql_report(queries)
    errors = {title: r["errors"] for title, r in zip(targets, report, strict=True) if r["errors"]}
    assert errors == {}
    # The check really parses: a broken query has error nodes.
    assert _logql_report(['{service_name="shop" | x'])[0]["errors"]


def _pending_alert_queries(run: MetricsRun) -> dict[str, str]:
    """The `logql` annotation of each pending alert, as Prometheus rendered it for this run."""
    alerts = run.prometheus.api("alerts")["alerts"]
    return {a["labels"]["alertname"]: a["annotations"]["logql"] for a in alerts if a["state"] == "pending"}


def test_the_rendered_alert_logql_parses_with_grafanas_grammar(run: MetricsRun) -> None:
    """The error-rate and latency alerts are pending, and their rendered `logql` queries parse."""
    queries = _pending_alert_queries(run)
    assert {"LogkitRouteErrorRateHigh", "LogkitRouteLatencyP95High"} <= set(queries)
    report = _logql_report(list(queries.values()))
    assert {name: r["errors"] for name, r in zip(queries, report, strict=True) if r["errors"]} == {}


def test_logql_names_are_labels_or_metadata_the_loki_stand_in_holds(run: MetricsRun) -> None:
    """Every label a dashboard or alert query selects, filters or groups by exists in the Loki stand-in."""
    targets = _targets("loki")
    targets.update(_pending_alert_queries(run))
    report = _logql_report([_substitute(expr, _loki_variables(run)) for expr in targets.values()])
    held = {name for e in run.loki for name in (*e.labels, *e.metadata)}
    missing = {}
    for title, result in zip(targets, report, strict=True):
        made = {label["name"] for label in result["labels"] if label["in"] == "LabelFormatMatcher"}
        used = {label["name"] for label in result["labels"] if label["in"] != "LabelFormatMatcher"}
        unknown = sorted(used - made - held - {"__error__"})
        if unknown:
            missing[title] = unknown
    assert missing == {}
    assert {"service_name", "trace_id", "request_id", "severity_text", "error_type", "route"} <= held
