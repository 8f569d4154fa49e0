"""Processes for the end-to-end tests: the collector binary and the example shop, both bounded.

Every process is started in its own session and is always stopped (SIGTERM, then SIGKILL) by
the caller's ``finally``; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.stack.processes import free_port, wait_until  # one copy, shared with make stack
from tests.support.processes import base_env

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_DIR = ROOT / "collector"
BASE_CONFIG = COLLECTOR_DIR / "config.yaml"
OVERLAYS = {name: COLLECTOR_DIR / "backends" / f"{name}.yaml" for name in ("loki", "cloudwatch", "elasticsearch")}
OVERLAYS["spanmetrics"] = COLLECTOR_DIR / "connectors" / "spanmetrics.yaml"
VENV_BIN = Path(sys.executable).parent

# A Luhn-valid test card number and a bearer token planted in requests; neither may reach a backend.
CARD = "4111 1111 1111 1111"
CARD_DIGITS = CARD.replace(" ", "")
BEARER_SECRET = "sk-e2e-6f1c2d9a8b7e4f30"
BEARER = f"Bearer {BEARER_SECRET}"
SECRETS = (CARD, CARD_DIGITS, "4111-1111-1111-1111", BEARER_SECRET)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status ``url`` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


def child_env(**extra: str) -> dict[str, str]:
    """The integration tests' child environment (:func:`tests.support.processes.base_env`) minus
    AWS_ variables (each backend test sets its own), plus ``extra``."""
    env = {k: v for k, v in base_env().items() if not k.startswith("AWS_")}
    env.update(extra)
    return env


def terminate(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after ``timeout`` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@dataclass
class Collector:
    """One run of the collector binary with the base config plus ``overlays``."""

    binary: Path
    overlays: Iterable[str]
    env: Mapping[str, str]
    log_path: Path
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def otlp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def args(self) -> list[str]:
        args = [str(self.binary), "--config", str(BASE_CONFIG)]
        for name in self.overlays:
            args += ["--config", str(OVERLAYS[name])]
        return args

    def start(self, timeout: float = 30.0) -> None:
        env = child_env(
            LOGKIT_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{self.grpc_port}",
            LOGKIT_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{self.http_port}",
            LOGKIT_HEALTH_CHECK_ENDPOINT=f"127.0.0.1:{self.health_port}",
            LOGKIT_COLLECTOR_METRICS_HOST="127.0.0.1",
            LOGKIT_COLLECTOR_METRICS_PORT=str(self.metrics_port),
            **self.env,
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        health = f"http://127.0.0.1:{self.health_port}/"

        def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"collector exited with {self.process.returncode}:\n{self.log_tail()}")
            return http_status(health) == 200

        wait_until(healthy, timeout, what="collector health check")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            terminate(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush — what the persistent queue must survive."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ShopRun:
    """The example shop under ``otel-logkit-instrument``, exporting to ``otlp_endpoint``."""

    otlp_endpoint: str
    port: int = field(default_factory=free_port)
    app: str = "examples.shop.main:app"
    # stdout and stderr go here instead of pipes, for runs that print more than a pipe buffers.
    stdout_path: Path | None = None
    process: subprocess.Popen[str] | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 40.0) -> None:
        env = child_env(
            OTEL_SERVICE_NAME="shop",
            LOGKIT_ENV="test",
            OTEL_EXPORTER_OTLP_ENDPOINT=self.otlp_endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
        args = [
            str(VENV_BIN / "otel-logkit-instrument"),
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        output = self.stdout_path.open("w") if self.stdout_path else None
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=output or subprocess.PIPE,
            stderr=subprocess.STDOUT if output else subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if output:
            output.close()

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"shop exited with {self.process.returncode}")
            return http_status(f"{self.url}/health") == 200

        wait_until(up, timeout, what="shop /health")

    def stop(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """SIGTERM the app (it flushes its OTLP queue on exit) and return its JSON log lines."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.stdout, self.stderr = self.process.communicate(timeout=10)
            raise
        if self.stdout_path:
            self.stdout = self.stdout_path.read_text()
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate(timeout=10)


def request(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None) -> int:
    """One HTTP request to the shop; returns the status (4xx/5xx are answers, not errors)."""
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def drive_shop(base_url: str, rounds: int = 3) -> None:
    """Requests covering every endpoint, with a card number and a bearer token planted in them."""
    auth = {"Authorization": BEARER}
    for i in range(rounds):
        assert request("GET", f"{base_url}/products", headers=auth) == 200
        assert request("GET", f"{base_url}/products/1?token={BEARER_SECRET}") == 200
        assert request("GET", f"{base_url}/products/99", headers=auth) == 404
        assert request("POST", f"{base_url}/login", {"username": f"ann{i}", "password": "correct horse"}) == 200
        assert request("POST", f"{base_url}/login", {"username": f"bob{i}", "password": BEARER}) == 401
        order = {"product_id": 2, "quantity": 1, "card": {"number": CARD, "cvv": "737"}, "phone": "+15550100123"}
        assert request("POST", f"{base_url}/orders", order, headers=auth) == 201
        bad = {"product_id": 42, "card": {"number": CARD, "cvv": "737"}}
        assert request("POST", f"{base_url}/orders", bad) == 422
        assert request("GET", f"{base_url}/orders/1001", headers=auth) == 200
        assert request("GET", f"{base_url}/boom") == 500
