"""Generates ``otel-logkit.json``, the Grafana dashboard, with grafana-foundation-sdk's typed builders.

    .venv/bin/python collector/dashboards/generate.py          # rewrite otel-logkit.json
    .venv/bin/python collector/dashboards/generate.py --check  # exit 1 when the file is stale

The SDK is pinned in pyproject.toml to its Grafana 10.4 flavour (schema 39), the oldest line
whose panels this dashboard uses; Grafana 10.4 and later import it. The committed JSON is the
product: tests/unit/test_dashboard.py fails when it differs from what this script builds.

Series: the span-metrics connector's (collector/connectors/spanmetrics.yaml). Logs: Loki's OTLP
mapping (collector/backends/loki.yaml): ``service_name`` is an index label; ``severity_text``,
``trace_id``, ``request_id``, ``route``, ``status_code``, ``duration_ms`` and ``error_type`` are
structured metadata, filtered after the selector.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, heatmap, logs, loki, prometheus, timeseries
from grafana_foundation_sdk.builders.dashboard import (
    CustomVariable,
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    TextBoxVariable,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import VizOrientation
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    GridPos,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale
from grafana_foundation_sdk.models.loki import LokiQueryType
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUTPUT = Path(__file__).with_name("otel-logkit.json")
UID = "otel-logkit"

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${DS_PROMETHEUS}")
LOKI = DataSourceRef(type_val="loki", uid="${DS_LOKI}")

CALLS = "traces_span_metrics_calls_total"
BUCKETS = "traces_span_metrics_duration_milliseconds_bucket"
# Server spans only: one per request. Client and internal spans have their own names and kinds.
SERVER = 'service_name="$service", span_kind="SPAN_KIND_SERVER"'
ROUTES = f'{SERVER}, http_route=~"$route"'
ERRORS = f'{ROUTES}, status_code="STATUS_CODE_ERROR"'


def _named_routes(expr: str) -> str:
    """Requests that matched no route (404s on unknown paths) carry no http_route: name them."""
    return f'label_replace({expr}, "http_route", "(no route)", "http_route", "")'


REQUESTS_PER_SECOND = _named_routes(f"sum by (http_route) (rate({CALLS}{{{ROUTES}}}[$__rate_interval]))")
LATENCY_BUCKETS = f"sum by (le) (increase({BUCKETS}{{{ROUTES}}}[$__rate_interval]))"
LATENCY_P95 = _named_routes(
    f"histogram_quantile(0.95, sum by (le, http_route) (rate({BUCKETS}{{{ROUTES}}}[$__rate_interval])))"
)
# One instant query over the dashboard's whole range, so "top 5" means five routes, not five
# per step; routes without traffic are left out rather than divided by zero.
ERROR_RATE_TOP5 = (
    f"topk(5, sum by (http_route) (increase({CALLS}{{{ERRORS}}}[$__range]))"
    f" / (sum by (http_route) (increase({CALLS}{{{ROUTES}}}[$__range])) > 0))"
)

ERROR_LINES = '{service_name="$service"} | severity_text=~"ERROR|CRITICAL|FATAL"'
# The log line of an OTLP record is its message, a template (values travel as attributes), so
# counting by message groups like errors together; 120 characters keep Loki's series bounded.
# Grouped by error_fingerprint too (logger, template, error type, application frame): one row per
# kind of error, however its message varies.
TOP_ERROR_KEYWORDS = (
    f"topk(10, sum by (error_fingerprint, error_type, message) (count_over_time({ERROR_LINES}"
    " | label_format message=`{{ __line__ | trunc 120 }}` [$__range])))"
)
FAILED_OR_SLOW = (
    '{service_name="$service"} | route=~"$route" | status_code >= 500 or duration_ms >= $slow_ms | __error__=""'
)
# Defaults: trace_id ".+" (every line inside a span), request_id ".*" (any, or none); set one of
# them (a click on a trace_id, or type it) and the panel shows the lines of that trace or request.
ONE_TRACE = '{service_name=~".+"} | trace_id=~"$trace_id" | request_id=~"$request_id"'

DASHBOARD_URL = f"/d/{UID}/{UID}"
ROUTE_LINK = f"{DASHBOARD_URL}?${{__url_time_range}}&var-service=$service&var-route=${{__field.labels.http_route}}"


def _option(value: str) -> VariableOption:
    return VariableOption(selected=True, text=value, value=value)


def _variables(dashboard: Dashboard) -> Dashboard:
    return (
        dashboard.with_variable(DatasourceVariable("DS_PROMETHEUS").label("Prometheus").type("prometheus"))
        .with_variable(DatasourceVariable("DS_LOKI").label("Loki").type("loki"))
        .with_variable(
            QueryVariable("service")
            .label("Service")
            .datasource(PROMETHEUS)
            .query(f'label_values({CALLS}{{span_kind="SPAN_KIND_SERVER"}}, service_name)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
        )
        .with_variable(
            QueryVariable("route")
            .label("Route")
            .datasource(PROMETHEUS)
            .query(f'label_values({CALLS}{{service_name="$service", span_kind="SPAN_KIND_SERVER"}}, http_route)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all"))
        )
        .with_variable(
            CustomVariable("slow_ms").label("Slow above (ms)").values("250,500,1000,2500,5000").current(_option("1000"))
        )
        .with_variable(TextBoxVariable("trace_id").label("Trace id").default_value(".+").current(_option(".+")))
        .with_variable(TextBoxVariable("request_id").label("Request id").default_value(".*").current(_option(".*")))
    )


def _prom(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    return prometheus.Dataquery().datasource(PROMETHEUS).expr(expr).legend_format(legend)


def build() -> dict[str, Any]:
    """The dashboard as the JSON object Grafana imports."""
    dashboard = (
        Dashboard("otel-logkit: requests, errors, latency and logs")
        .uid(UID)
        .description(
            "RED metrics from the span-metrics connector (Prometheus) and the app's lines (Loki), "
            "linked by trace_id. Generated by collector/dashboards/generate.py."
        )
        .tags(["otel-logkit", "red", "logs"])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(
            DashboardLink("Lines of this trace or request")
            .type(DashboardLinkType.LINK)
            .url(f"{DASHBOARD_URL}?viewPanel=7")
            .include_vars(True)
            .keep_time(True)
            .icon("doc")
        )
    )
    dashboard = _variables(dashboard)
    dashboard = (
        dashboard.with_panel(
            timeseries.Panel()
            .id(1)
            .title("Requests per second")
            .description("Is traffic normal? Requests per second by route (server spans).")
            .datasource(PROMETHEUS)
            .grid_pos(GridPos(h=8, w=12, x=0, y=0))
            .unit("reqps")
            .min(0)
            .with_target(_prom(REQUESTS_PER_SECOND, "{{http_route}}").ref_id("A"))
        )
        .with_panel(
            bargauge.Panel()
            .id(2)
            .title("Error rate — top 5 routes")
            .description(
                "Which routes fail? Share of requests ending in a server error (span status ERROR: "
                "5xx or an unhandled exception) over the dashboard's range. Click a bar for its lines."
            )
            .datasource(PROMETHEUS)
            .grid_pos(GridPos(h=8, w=12, x=12, y=0))
            .unit("percentunit")
            .min(0)
            .max(1)
            .orientation(VizOrientation.HORIZONTAL)
            .data_links([DashboardLink("Failed or slow requests on ${__field.labels.http_route}").url(ROUTE_LINK)])
            .with_target(_prom(ERROR_RATE_TOP5, "{{http_route}}").ref_id("A").instant())
        )
        .with_panel(
            heatmap.Panel()
            .id(3)
            .title("Latency P95 heatmap")
            .description(
                "Is it slow, and for how many? Request durations per histogram bucket; "
                "the P95 line per route is the panel beside it."
            )
            .datasource(PROMETHEUS)
            .grid_pos(GridPos(h=8, w=12, x=0, y=8))
            .calculate(False)
            .y_axis(heatmap.YAxisConfig().unit("ms"))
            .color(
                heatmap.HeatmapColorOptions()
                .mode(HeatmapColorMode.SCHEME)
                .scheme("Oranges")
                .fill("dark-orange")
                .scale(HeatmapColorScale.EXPONENTIAL)
                .exponent(0.5)
                .steps(64)
            )
            .show_y_histogram()
            .with_target(_prom(LATENCY_BUCKETS, "{{le}}").ref_id("A").format(PromQueryFormat.HEATMAP))
        )
        .with_panel(
            timeseries.Panel()
            .id(4)
            .title("Latency P95 by route")
            .description("The P95 of the heatmap, per route: which route got slow.")
            .datasource(PROMETHEUS)
            .grid_pos(GridPos(h=8, w=12, x=12, y=8))
            .unit("ms")
            .min(0)
            .with_target(_prom(LATENCY_P95, "{{http_route}}").ref_id("A"))
        )
        .with_panel(
            bargauge.Panel()
            .id(5)
            .title("Top error keywords")
            .description(
                "What is failing? The most frequent kinds of ERROR lines (error_fingerprint, error type, "
                "message) over the dashboard's range."
            )
            .datasource(LOKI)
            .grid_pos(GridPos(h=8, w=12, x=0, y=16))
            .orientation(VizOrientation.HORIZONTAL)
            .with_target(
                loki.Dataquery()
                .datasource(LOKI)
                .ref_id("A")
                .expr(TOP_ERROR_KEYWORDS)
                .query_type(LokiQueryType.INSTANT)
                .legend_format("{{error_type}} {{message}}")
            )
        )
        .with_panel(
            logs.Panel()
            .id(6)
            .title("Failed or slow requests")
            .description(
                "The access line of every request that failed (5xx) or took longer than the "
                "'Slow above' variable. Open a line: its trace_id links to that trace's lines and trace."
            )
            .datasource(LOKI)
            .grid_pos(GridPos(h=8, w=12, x=12, y=16))
            .show_time(True)
            .enable_log_details(True)
            .wrap_log_message(True)
            .with_target(loki.Dataquery().datasource(LOKI).ref_id("A").expr(FAILED_OR_SLOW).max_lines(500))
        )
        .with_panel(
            logs.Panel()
            .id(7)
            .title("Lines of one trace or request")
            .description(
                "Every line of one trace (set 'Trace id') or one request (set 'Request id'), across "
                "services, oldest first."
            )
            .datasource(LOKI)
            .grid_pos(GridPos(h=10, w=24, x=0, y=24))
            .show_time(True)
            .enable_log_details(True)
            .wrap_log_message(True)
            .sort_order("Ascending")
            .with_target(loki.Dataquery().datasource(LOKI).ref_id("A").expr(ONE_TRACE).max_lines(1000))
        )
    )
    encoded = JSONEncoder(sort_keys=True, indent=2).encode(dashboard.build())
    result: dict[str, Any] = json.loads(encoded)
    return result


def render() -> str:
    """The file's text: the dashboard, keys sorted, two-space indent, final newline."""
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when otel-logkit.json is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
