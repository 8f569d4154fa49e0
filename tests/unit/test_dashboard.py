"""The Grafana dashboard, its generator and the alert rules, checked as files (Python only)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "collector" / "dashboards"
DASHBOARD = DASHBOARDS / "otel-logkit.json"
RULES = ROOT / "collector" / "rules" / "otel-logkit.rules.yml"
SPANMETRICS = ROOT / "collector" / "connectors" / "spanmetrics.yaml"

FIXED_TITLES = ["Requests per second", "Latency P95 heatmap", "Error rate — top 5 routes", "Top error keywords"]
DATASOURCES = {"prometheus": "${DS_PROMETHEUS}", "loki": "${DS_LOKI}"}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("otel_logkit_dashboard_generator", DASHBOARDS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
    return panel


def test_committed_json_is_what_the_generator_builds() -> None:
    """otel-logkit.json is the generator's output: edit generate.py, then run it."""
    assert _generator().render() == DASHBOARD.read_text()


def test_the_four_fixed_titles_exist(dashboard: dict[str, Any]) -> None:
    """The panel titles DESIGN.md fixes are all there."""
    titles = [p["title"] for p in dashboard["panels"]]
    assert [t for t in FIXED_TITLES if t not in titles] == []


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    """No two panels share an id (Grafana links and viewPanel use them)."""
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_and_query_uses_one_of_the_two_datasource_variables(dashboard: dict[str, Any]) -> None:
    """Panels and their targets name ${DS_PROMETHEUS} or ${DS_LOKI}, never a concrete data source."""
    refs = [(p["title"], p["datasource"]) for p in dashboard["panels"]]
    refs += [(p["title"], t["datasource"]) for p in dashboard["panels"] for t in p["targets"]]
    wrong = [(title, ref) for title, ref in refs if DATASOURCES.get(ref.get("type")) != ref.get("uid")]
    assert wrong == []


def test_datasource_service_and_route_variables_exist(dashboard: dict[str, Any]) -> None:
    """The data sources are variables, and so are the service and the route."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["DS_LOKI"]["query"] == "loki"
    assert variables["service"]["type"] == "query"
    assert variables["route"]["includeAll"] is True
    assert "$service" in variables["route"]["query"]


def test_top_lists_are_instant_queries_over_the_dashboard_range(dashboard: dict[str, Any]) -> None:
    """Top 5 and top keywords are one instant query over $__range, not a top-k per step."""
    (errors,) = _panel(dashboard, "Error rate — top 5 routes")["targets"]
    (keywords,) = _panel(dashboard, "Top error keywords")["targets"]
    assert errors["instant"] is True
    assert errors["range"] is False
    assert keywords["queryType"] == "instant"
    for target in (errors, keywords):
        assert target["expr"].startswith("topk(")
        assert "[$__range]" in target["expr"]


def test_heatmap_shows_the_precomputed_buckets(dashboard: dict[str, Any]) -> None:
    """The heatmap reads the connector's buckets as they are, one row per `le`."""
    panel = _panel(dashboard, "Latency P95 heatmap")
    (target,) = panel["targets"]
    assert panel["options"]["calculate"] is False
    assert target["format"] == "heatmap"
    assert target["legendFormat"] == "{{le}}"
    assert "traces_span_metrics_duration_milliseconds_bucket" in target["expr"]


def test_prometheus_queries_count_server_spans_of_the_selected_service(dashboard: dict[str, Any]) -> None:
    """Every PromQL target is about server spans (one per request) of $service."""
    exprs = [t["expr"] for p in dashboard["panels"] if p["datasource"]["type"] == "prometheus" for t in p["targets"]]
    assert exprs
    for expr in exprs:
        assert 'span_kind="SPAN_KIND_SERVER"' in expr
        assert 'service_name="$service"' in expr


def test_a_logs_panel_follows_one_trace_or_request(dashboard: dict[str, Any]) -> None:
    """Some logs panel filters on both the trace_id and the request_id variables."""
    logs = [t["expr"] for p in dashboard["panels"] if p["type"] == "logs" for t in p["targets"]]
    assert any("trace_id" in e and "$trace_id" in e and "$request_id" in e for e in logs)


def _alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_each_alert_waits_and_names_a_dashboard_panel_and_a_logql_query(alert: dict[str, Any]) -> None:
    """Alerts have a `for:` and a runbook naming an existing panel and a Loki query to run."""
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    annotations = alert["annotations"]
    assert re.fullmatch(r"\d+m", alert["for"])
    assert any(f'"{title}"' in annotations["runbook"] for title in titles)
    assert annotations["logql"].startswith("{service_name=")


def test_spanmetrics_overlay_has_route_and_status_dimensions_and_a_short_flush() -> None:
    """The connector (new type name) keys on route and both status-code conventions and flushes often."""
    config = yaml.safe_load(SPANMETRICS.read_text())
    connector = config["connectors"]["span_metrics"]
    assert [d["name"] for d in connector["dimensions"]][:3] == [
        "http.route",
        "http.response.status_code",
        "http.status_code",
    ]
    assert int(connector["metrics_flush_interval"].rstrip("s")) <= 15
    assert config["service"]["pipelines"]["metrics/spanmetrics"]["receivers"] == ["span_metrics"]
