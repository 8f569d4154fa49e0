"""``make stack``: PostgreSQL, the shop behind nginx, fake gateways and the collector, locally.

Everything runs as a real process on 127.0.0.1 from one temporary directory: PostgreSQL with
its jsonlog slow-query log (every statement logged), the shop under ``otel-logkit-instrument``
(SQLAlchemy on PostgreSQL, ``LOGKIT_SQL_COMMENTER=true``, JSON lines to a file only:
``OTEL_LOGS_EXPORTER=none``), nginx in front of it with the otel-logkit snippet, the fake payment
and SMS gateways, and the collector with the Loki overlay and the filelog overlay writing to a
Loki stand-in. One order is placed, its trail printed from the three logs and from what Loki
received, then the stack serves until Ctrl-C (or ``--lifetime`` seconds).

Needs ``nginx`` and PostgreSQL >= 15 (``apt-get install -y nginx postgresql``) and the collector
(``make collector``, or ``OTELCOL_BIN``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from examples.stack.processes import Nginx, Postgres, free_port, postgres_bindir, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ORDER = {
    "product_id": 2,
    "quantity": 1,
    "card": {"number": "4242 4242 4242 4242", "cvv": "737"},
    "phone": "+15550100123",
}


def missing_programs(collector: Path) -> list[str]:
    """One sentence per program the stack needs and this machine lacks."""
    missing = []
    if shutil.which("nginx") is None:
        missing.append("nginx is not installed: apt-get install -y nginx")
    if postgres_bindir() is None:
        missing.append("PostgreSQL (initdb, postgres) is not installed: apt-get install -y postgresql")
    if not (collector.is_file() and os.access(collector, os.X_OK)):
        missing.append(f"the collector {collector} is missing: run `make collector` or set OTELCOL_BIN")
    return missing


def _start(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as stream:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGKIT_"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _grep(path: Path, needle: str) -> list[dict[str, Any]]:
    found = []
    for file in sorted(path.parent.glob(path.name)):
        for line in file.read_text(errors="replace").splitlines():
            if needle in line and line.startswith("{"):
                found.append(json.loads(line))
    return found


def main() -> int:  # noqa: PLR0915 - one linear start-up script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("STACK_PORT", "8080")), help="nginx port")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="seconds before the stack stops itself")
    args = parser.parse_args()
    collector_bin = Path(os.environ.get("OTELCOL_BIN") or ROOT / "bin" / "otelcol-logkit")
    missing = missing_programs(collector_bin)
    if missing:
        for sentence in missing:
            print(f"make stack: {sentence}", file=sys.stderr)
        return 2

    # SIGTERM (make's, a terminal's) stops the stack as Ctrl-C does: every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from tests.e2e.backends.loki import LokiStandIn
    from tests.fakes.gateways import FakePaymentGateway, FakeSmsGateway

    base = Path(tempfile.mkdtemp(prefix="otel-logkit-stack-"))
    postgres = Postgres(min_duration_ms=0)
    lifetime = args.lifetime + 300  # the start-up comes on top
    payment, sms = FakePaymentGateway(max_lifetime=lifetime), FakeSmsGateway(max_lifetime=lifetime)
    loki = LokiStandIn()
    shop: subprocess.Popen[bytes] | None = None
    collector: subprocess.Popen[bytes] | None = None
    nginx: Nginx | None = None
    try:
        postgres.start()
        payment.start()
        sms.start()
        loki.start()
        shop_port, health_port, otlp_port = free_port(), free_port(), free_port()
        shop_log = base / "shop.log"
        shop = _start(
            [
                *(str(BIN / "otel-logkit-instrument"), "uvicorn", "examples.shop.main:app"),
                *("--host", "127.0.0.1", "--port", str(shop_port), "--no-access-log"),
            ],
            _env(
                OTEL_SERVICE_NAME="shop",
                LOGKIT_ENV="dev",
                LOGKIT_LOG_LEVEL="INFO",
                OTEL_LOGS_EXPORTER="none",
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
                LOGKIT_SQL_COMMENTER="true",
                LOGKIT_TRUSTED_PROXIES="127.0.0.1",
                LOGKIT_GATEWAYS="payment=127.0.0.1;sms=localhost",
                SHOP_DATABASE_URL=postgres.url,
                SHOP_PAYMENT_URL=payment.url,
                SHOP_SMS_URL=sms.url.replace("127.0.0.1", "localhost"),
            ),
            shop_log,
        )
        wait_until(lambda: _up(f"http://127.0.0.1:{shop_port}/health"), 40, what="the shop")
        nginx = Nginx(upstream=f"127.0.0.1:{shop_port}", base=base / "nginx", port=args.port)
        nginx.start()
        filelog = ROOT / "collector" / "receivers" / "filelog.yaml"
        collector = _start(
            [
                *(str(collector_bin), "--feature-gates=stanza.synchronousLogEmitter"),
                *("--config", str(ROOT / "collector" / "config.yaml")),
                *("--config", str(ROOT / "collector" / "backends" / "loki.yaml"), "--config", str(filelog)),
            ],
            _env(
                LOGKIT_COLLECTOR_STORAGE_DIR=str(base / "collector"),
                LOGKIT_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{otlp_port}",
                LOGKIT_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{free_port()}",
                LOGKIT_HEALTH_CHECK_ENDPOINT=f"127.0.0.1:{health_port}",
                LOGKIT_COLLECTOR_METRICS_PORT=str(free_port()),
                LOGKIT_LOKI_ENDPOINT=f"{loki.url}/otlp",
                LOGKIT_FILELOG_APP_INCLUDE=f'["{shop_log}"]',
                LOGKIT_FILELOG_NGINX_INCLUDE=f'["{nginx.access_log}"]',
                LOGKIT_FILELOG_POSTGRESQL_INCLUDE=f'["{postgres.log_dir}/*.json"]',
                LOGKIT_FILELOG_START_AT="beginning",
            ),
            base / "collector.log",
        )
        wait_until(lambda: _up(f"http://127.0.0.1:{health_port}/"), 30, what="the collector")

        _up(f"{nginx.url}/products")  # the first request creates the tables
        # One order, followed through the three logs and the backend.
        req = urllib.request.Request(
            f"{nginx.url}/orders", data=json.dumps(ORDER).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=15) as response:
            request_id = response.headers["X-Request-ID"]
            print(f"POST {nginx.url}/orders -> {response.status}, X-Request-ID: {request_id}\n")

        def in_loki() -> dict[str, list[Any]]:
            with loki.lock:
                found: dict[str, list[Any]] = {}
                for entry in loki.entries:
                    if entry.metadata.get("request_id") == request_id:
                        found.setdefault(entry.labels["service_name"], []).append(entry)
            return found if {"nginx", "shop", "postgresql"} <= set(found) else {}

        found = wait_until(in_loki, 30, what="the three sources in Loki")
        print(f"nginx access log ({nginx.access_log}):")
        for line in _grep(nginx.access_log, request_id):
            print("  " + json.dumps(line))
        print(f"\nshop stdout ({shop_log}):")
        for line in _grep(shop_log, request_id):
            print("  " + json.dumps(line))
        print(f"\nPostgreSQL jsonlog ({postgres.log_dir}/*.json):")
        for line in _grep(postgres.log_dir / "*.json", request_id):
            if " ms  execute" in line["message"] or " ms  statement" in line["message"]:
                print("  " + json.dumps({k: line[k] for k in ("timestamp", "error_severity", "message") if k in line}))
        print("\nLoki (through the collector's filelog overlay), by request_id:")
        for service, entries in sorted(found.items()):
            for entry in entries:
                if service == "postgresql" and not re.search(r" ms  (execute|statement)", entry.line):
                    continue  # parse/bind steps of the extended protocol
                print(f"  {service:10} trace_id={entry.metadata.get('trace_id', '-'):32}  {entry.line[:110]}")
        print(
            f"\nThe stack is up: nginx on {nginx.url} (try `curl -si {nginx.url}/products`).\n"
            f"Follow any request: grep <X-Request-ID> {nginx.access_log} {shop_log} {postgres.log_dir}/*.json\n"
            f"Everything lives in {base}. Ctrl-C stops it (or after {args.lifetime:.0f} s)."
        )
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(args.lifetime)
        return 0
    finally:
        if nginx is not None:
            nginx.stop()
        _stop(shop)
        _stop(collector)
        postgres.stop()
        for server in (payment, sms, loki):
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
