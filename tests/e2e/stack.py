"""The three backends together, and the collector environment that points at them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import records
from tests.e2e.backends.cloudwatch import CREDENTIALS, CloudWatchStandIn
from tests.e2e.backends.elasticsearch import ElasticsearchStandIn
from tests.e2e.backends.loki import LokiStandIn
from tests.e2e.harness import free_port

LOG_STREAM = "shop"


def _log_group() -> str:
    # moto keeps state for the whole test process: each stack writes to a group of its own.
    return f"/otel-logkit/e2e-{uuid.uuid4().hex[:8]}"


@dataclass
class Backends:
    """Loki and Elasticsearch stand-ins and a moto CloudWatch Logs, all on 127.0.0.1."""

    loki: LokiStandIn = field(default_factory=LokiStandIn)
    elasticsearch: ElasticsearchStandIn = field(default_factory=ElasticsearchStandIn)
    cloudwatch: CloudWatchStandIn = field(default_factory=lambda: CloudWatchStandIn(free_port()))
    log_group: str = field(default_factory=_log_group)

    def start(self) -> None:
        self.loki.start()
        self.elasticsearch.start()
        self.cloudwatch.start()

    def stop(self) -> None:
        self.loki.stop()
        self.elasticsearch.stop()
        self.cloudwatch.stop()

    def collector_env(self, storage_dir: Path) -> dict[str, str]:
        return {
            "LOGKIT_COLLECTOR_STORAGE_DIR": str(storage_dir),
            "LOGKIT_LOKI_ENDPOINT": f"{self.loki.url}/otlp",
            "LOGKIT_ELASTICSEARCH_ENDPOINT": self.elasticsearch.url,
            "LOGKIT_CLOUDWATCH_ENDPOINT": self.cloudwatch.url,
            "LOGKIT_CLOUDWATCH_LOG_GROUP": self.log_group,
            "LOGKIT_CLOUDWATCH_LOG_STREAM": LOG_STREAM,
            "AWS_EC2_METADATA_DISABLED": "true",
            **CREDENTIALS,
        }

    def received(self, service: str = "shop") -> dict[str, list[records.Record]]:
        """What each backend holds for ``service``, normalised to records."""
        with self.loki.lock:
            loki = [records.from_loki(e) for e in self.loki.entries if e.labels.get("service_name") == service]
        elastic = [records.from_elasticsearch(d) for d in self.elasticsearch.logs()]
        cloudwatch = [records.from_cloudwatch(e) for e in self.cloudwatch.events(self.log_group, LOG_STREAM)]
        return {
            "loki": loki,
            "elasticsearch": [r for r in elastic if r[records.FIELDS.index("service")] == service],
            "cloudwatch": [r for r in cloudwatch if r[records.FIELDS.index("service")] == service],
        }

    def wait_for(self, count: int, timeout: float, service: str = "shop") -> dict[str, list[records.Record]]:
        """Poll until every backend holds at least ``count`` records (or ``timeout``); then settle."""
        deadline = time.monotonic() + timeout
        got = self.received(service)
        while time.monotonic() < deadline and min(len(v) for v in got.values()) < count:
            time.sleep(0.5)
            got = self.received(service)
        time.sleep(2.0)  # let any duplicate arrive before the caller compares
        return self.received(service)
