"""The example shop → otel-logkit-instrument → otelcol-logkit → Loki, CloudWatch Logs, Elasticsearch."""

from __future__ import annotations

import json

import pytest

from tests.e2e import records
from tests.e2e.conftest import ShopDelivery
from tests.e2e.harness import SECRETS
from tests.e2e.stack import LOG_STREAM

pytestmark = pytest.mark.e2e

BACKENDS = ["loki", "cloudwatch", "elasticsearch"]


def test_the_shop_printed_request_lines_with_full_context(shop_delivery: ShopDelivery) -> None:
    """The run is meaningful: many lines, most inside requests with trace, span and request ids."""
    in_requests = [line for line in shop_delivery.lines if line.get("request_id")]
    assert len(shop_delivery.lines) >= 40
    assert len(in_requests) >= 30
    assert all(line.get("trace_id") and line.get("span_id") for line in in_requests)
    assert {"INFO", "WARNING", "ERROR"} <= {line["level"] for line in shop_delivery.lines}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_app_line_arrives_exactly_once(shop_delivery: ShopDelivery, backend: str) -> None:
    """Each printed line arrives once, with timestamp, level, message, logger, service, env, ids."""
    report = records.delivery_report(shop_delivery.expected, shop_delivery.received[backend])
    assert report == ""


def test_loki_gets_few_index_labels_and_ids_as_structured_metadata(shop_delivery: ShopDelivery) -> None:
    """Only service_name and deployment_environment_name become labels; ids stay metadata."""
    loki = shop_delivery.backends.loki
    shop_entries = [e for e in loki.entries if e.labels.get("service_name") == "shop"]
    assert {tuple(sorted(e.labels.items())) for e in shop_entries} == {
        (("deployment_environment_name", "test"), ("service_name", "shop"))
    }
    in_request = [e for e in shop_entries if "request_id" in e.metadata]
    assert in_request
    for entry in in_request:
        assert {"trace_id", "span_id", "request_id", "level", "severity_text"} <= set(entry.metadata)
    # service.instance.id would be a per-process label: it is moved down to metadata.
    assert all("service_instance_id" in e.metadata for e in shop_entries)


def test_elasticsearch_gets_otel_mapped_documents_in_the_logkit_data_stream(shop_delivery: ShopDelivery) -> None:
    """Logs are bulk-indexed into logs-logkit.otel-default as OTel-native documents, gzip on the wire."""
    es = shop_delivery.backends.elasticsearch
    with es.lock:
        log_indices = {index for index in es.documents if index.startswith("logs-")}
        gzip_bodies = [h for h in es.bulk_requests if h.get("Content-Encoding") == "gzip"]
    assert log_indices == {"logs-logkit.otel-default"}
    assert gzip_bodies
    document = es.logs()[0]
    assert {"@timestamp", "body", "attributes", "resource", "severity_text"} <= set(document)
    assert document["data_stream"] == {"type": "logs", "dataset": "logkit.otel", "namespace": "default"}


def test_cloudwatch_events_are_json_records_in_the_configured_group_and_stream(shop_delivery: ShopDelivery) -> None:
    """The exporter created the group and stream from the environment and wrote JSON events."""
    events = shop_delivery.backends.cloudwatch.events(shop_delivery.backends.log_group, LOG_STREAM)
    assert events
    assert {"body", "severity_text", "attributes", "resource"} <= set(events[0]["message"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_planted_secret_reaches_the_backend(shop_delivery: ShopDelivery, backend: str) -> None:
    """The card number and bearer token sent to the shop appear nowhere a backend stored."""
    stack = shop_delivery.backends
    if backend == "loki":
        stored = json.dumps([e.__dict__ for e in stack.loki.entries])
    elif backend == "elasticsearch":
        with stack.elasticsearch.lock:
            stored = json.dumps(stack.elasticsearch.documents)
    else:
        stored = json.dumps(stack.cloudwatch.events(stack.log_group, LOG_STREAM))
    assert stored.count('"') > 100  # something was stored
    for secret in SECRETS:
        assert secret not in stored
