"""The ops stack for tests: PostgreSQL, the shop behind nginx, a fake payment gateway, and the
collector with the filelog overlay writing to the Loki stand-in; spans go to a trace stand-in.

The shop runs with ``OTEL_LOGS_EXPORTER=none``: its stdout goes to a file, the collector reads it
(the Kubernetes node-agent pattern), so Loki gets the three sources only through filelog.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from examples.stack.processes import Nginx, Postgres
from tests.e2e.backends._http import StandIn
from tests.e2e.backends.loki import LokiEntry, LokiStandIn
from tests.e2e.harness import (
    BASE_CONFIG,
    COLLECTOR_DIR,
    OVERLAYS,
    ROOT,
    VENV_BIN,
    Collector,
    child_env,
    free_port,
    http_status,
    wait_until,
)
from tests.fakes.gateways import FakePaymentGateway

FILELOG_OVERLAY = COLLECTOR_DIR / "receivers" / "filelog.yaml"
FEATURE_GATES = "--feature-gates=stanza.synchronousLogEmitter"


@dataclass(frozen=True)
class Span:
    """One received span, ids as lower-case hex."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]


class TraceStandIn(StandIn):
    """OTLP/HTTP protobuf traces at ``/v1/traces``, kept in ``spans``."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.spans: list[Span] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if method != "POST" or path != "/v1/traces":
            return 404, {}, b""
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = [
            Span(
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                kind=span.kind,
                attributes={
                    kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value") for kv in span.attributes
                },
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self.lock:
            self.spans.extend(spans)
        return 200, {"Content-Type": "application/x-protobuf"}, ExportTraceServiceResponse().SerializeToString()


@dataclass
class FileCollector(Collector):
    """The collector with config.yaml + the Loki overlay + the filelog overlay."""

    def args(self) -> list[str]:
        return [
            str(self.binary),
            FEATURE_GATES,
            "--config",
            str(BASE_CONFIG),
            "--config",
            str(OVERLAYS["loki"]),
            "--config",
            str(FILELOG_OVERLAY),
        ]


def filelog_env(
    storage: Path, loki: LokiStandIn, app: list[Path], nginx: list[Path], postgresql: list[Path]
) -> dict[str, str]:
    """The collector environment: where each source's files are, read from their beginning."""

    def paths(items: list[Path]) -> str:
        return "[" + ", ".join(f'"{p}"' for p in items) + "]"

    return {
        "LOGKIT_COLLECTOR_STORAGE_DIR": str(storage),
        "LOGKIT_LOKI_ENDPOINT": f"{loki.url}/otlp",
        "LOGKIT_FILELOG_APP_INCLUDE": paths(app),
        "LOGKIT_FILELOG_NGINX_INCLUDE": paths(nginx),
        "LOGKIT_FILELOG_POSTGRESQL_INCLUDE": paths(postgresql),
        "LOGKIT_FILELOG_START_AT": "beginning",
    }


@dataclass
class ShopProcess:
    """The shop under otel-logkit-instrument, stdout (JSON lines) appended to ``log_path``."""

    log_path: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 40.0) -> None:
        args = [str(VENV_BIN / "otel-logkit-instrument"), "uvicorn", "examples.shop.main:app"]
        args += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        with self.log_path.open("ab") as out, (self.log_path.parent / "shop.stderr").open("ab") as err:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=child_env(**self.env), stdout=out, stderr=err, start_new_session=True
            )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"shop exited: {(self.log_path.parent / 'shop.stderr').read_text()[-2000:]}")
            return http_status(f"{self.url}/health") == 200

        wait_until(up, timeout, what="shop /health")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class OpsStack:
    """Everything of :mod:`examples.stack` on 127.0.0.1, for one test module."""

    binary: Path
    tmp: Path
    sql_commenter: bool = True
    postgres: Postgres = field(default_factory=Postgres)
    payment: FakePaymentGateway = field(default_factory=lambda: FakePaymentGateway(max_lifetime=600))
    loki: LokiStandIn = field(default_factory=LokiStandIn)
    traces: TraceStandIn = field(default_factory=TraceStandIn)
    shop: ShopProcess | None = None
    nginx: Nginx | None = None
    collector: FileCollector | None = None

    @property
    def app_log(self) -> Path:
        return self.tmp / "shop.log"

    def start(self) -> None:
        self.postgres.start()
        self.payment.start()
        self.loki.start()
        self.traces.start()
        self.shop = ShopProcess(
            self.app_log,
            {
                "OTEL_SERVICE_NAME": "shop",
                "LOGKIT_ENV": "test",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{self.traces.url}/v1/traces",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "LOGKIT_SQL_COMMENTER": "true" if self.sql_commenter else "false",
                "LOGKIT_GATEWAYS": "payment=127.0.0.1",
                "LOGKIT_TRUSTED_PROXIES": "127.0.0.1",
                "SHOP_DATABASE_URL": self.postgres.url,
                "SHOP_PAYMENT_URL": self.payment.url,
            },
        )
        self.shop.start()
        self.nginx = Nginx(upstream=f"127.0.0.1:{self.shop.port}", base=self.tmp / "nginx")
        self.nginx.start()
        env = filelog_env(
            self.tmp / "storage",
            self.loki,
            app=[self.app_log],
            nginx=[self.nginx.access_log],
            postgresql=[self.postgres.log_dir / "*.json"],
        )
        self.collector = FileCollector(self.binary, (), env, self.tmp / "collector.log")
        self.collector.start()

    def stop(self) -> None:
        for stop in (
            self.nginx.stop if self.nginx else None,
            self.shop.stop if self.shop else None,
            self.collector.stop if self.collector else None,
            self.postgres.stop,
            self.payment.stop,
            self.loki.stop,
            self.traces.stop,
        ):
            if stop is not None:
                with contextlib.suppress(Exception):
                    stop()

    def loki_entries(self, service: str | None = None) -> list[LokiEntry]:
        with self.loki.lock:
            entries = list(self.loki.entries)
        return [e for e in entries if service is None or e.labels.get("service_name") == service]
