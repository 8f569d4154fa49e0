"""A real Prometheus (Debian's ``prometheus`` package) for the end-to-end tests, on 127.0.0.1.

It runs in a temporary directory, scrapes the collector's ``prometheus`` exporter, loads the
project's alert rules, and is stopped by pid (SIGTERM, then SIGKILL) by the caller's ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import ROOT, free_port, http_status, terminate, wait_until

RULES = ROOT / "collector" / "rules" / "otel-logkit.rules.yml"
SCRAPE_INTERVAL_S = 2


def binary(name: str = "prometheus") -> str:
    """The Prometheus (or promtool) binary: $PROMETHEUS_BIN's folder, else PATH."""
    folder = os.environ.get("PROMETHEUS_BIN")
    found = str(Path(folder).parent / name) if folder else shutil.which(name)
    if not found or not os.access(found, os.X_OK):
        raise FileNotFoundError(f"{name} not found: apt-get install -y prometheus (or set PROMETHEUS_BIN)")
    return found


@dataclass
class Prometheus:
    """One Prometheus scraping ``target`` (host:port) every 2 s, with the alert rules loaded."""

    target: str
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": "otel-logkit-spanmetrics",
                    # as collector/README.md advises: `job` is the service the series describe
                    "honor_labels": True,
                    "static_configs": [{"targets": [self.target]}],
                }
            ],
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config))  # JSON is YAML
        args = [
            binary(),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
        ]
        log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            return http_status(f"{self.url}/-/ready") == 200

        wait_until(ready, timeout, what="prometheus /-/ready")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout=15)

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "prometheus.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path> and return its ``data`` (raises on an error status)."""
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant query evaluated at unix time ``at``: the vector's samples."""
        data = self.api("query", query=expr, time=f"{at:.3f}")
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        """Values of ``label`` among the series ``match`` selects (Grafana's ``label_values``)."""
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": match})
        return values
