"""HTTP throughput and latency: bare uvicorn vs ``opentelemetry-instrument`` vs ``otel-logkit-instrument``.

Two endpoints of one FastAPI app, each served by a fresh single-worker uvicorn per variant and
round, the variants interleaved (rotated order) in one run, all on 127.0.0.1:
- ``GET /ping``: the framework and the instrumentation, nothing else;
- ``POST /orders``: parses JSON, logs one line, calls an outbound payment gateway (a local
  fake server in another process) with httpx.
Load: ``wrk`` (``apt-get install -y wrk``) with a fixed number of connections. Reported per
variant: requests/s and p50/p99 latency (medians over rounds), time from spawn to the first
answered request, and ratios to bare uvicorn. Telemetry goes to a local OTLP/HTTP sink; stdout
goes to /dev/null. The official path uses ``opentelemetry-distro`` (installed on first run into
``~/.cache/otel-logkit-bench``, never into the project's environment, so that
``opentelemetry-instrument`` keeps finding otel-logkit's distro for everyone else).

Run: ``.venv/bin/python bench/bench_http.py [--seconds 5] [--rounds 3] [--connections 16] [--ablations]
[--skip-official]``;
Every run has two otel-logkit variants beside the default (export through the per-process helper):
with both exports off (``OTEL_*_EXPORTER=none``: what export costs) and with export from the app's
own threads (``LOGKIT_EXPORT_PROCESS=false``). CPU per request is read from ``/proc`` for the app
process and, separately, for its descendants (the export helper).
``--ablations`` adds otel-logkit runs with the OTLP log or the span export off (where the time goes)
one with 10 % of traces sampled (``OTEL_TRACES_SAMPLER=parentbased_traceidratio``) and one with
``LOGKIT_GC_FREEZE=true``.
This is a benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OFFICIAL_SITE = Path.home() / ".cache" / "otel-logkit-bench" / "official-0.66b1"
ORDER_BODY = '{"id": 1234, "amount": 1290, "currency": "EUR", "card": {"number": "4242424242424242"}}'


# --------------------------------------------------------------------------- the app under test
def create_app() -> Any:
    """The benchmarked app (``uvicorn --factory bench_http:create_app``)."""
    import httpx
    import structlog
    from fastapi import FastAPI, Request

    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        # Experiment knob: a shorter GIL switch interval lets the event loop win the GIL back
        # sooner from the export threads (applied to every variant alike).
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    log = structlog.get_logger("bench.app")
    gateway = httpx.AsyncClient(base_url=os.environ["BENCH_GATEWAY_URL"], timeout=10)
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    @app.post("/orders")
    async def orders(request: Request) -> dict[str, Any]:
        order = await request.json()
        log.info("order created", order_id=order["id"], amount_cents=order["amount"])
        charge = await gateway.post("/v1/charges", json={"amount": order["amount"], "card": order["card"]})
        return {"ok": charge.status_code == 200}

    return app


# --------------------------------------------------------------------------- the fake gateway
async def _serve_gateway(port: int, lifetime: float) -> None:
    """A keep-alive HTTP/1.1 responder: fast enough never to be the bottleneck."""
    response = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"id":"ch_42"}'

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if match:
                    await reader.readexactly(int(match.group(1)))
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await asyncio.sleep(lifetime)


# --------------------------------------------------------------------------- orchestration
@dataclass
class Variant:
    """One way of running the app."""

    name: str
    prefix: list[str]
    env: dict[str, str]
    results: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    startup: list[float] = field(default_factory=list)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_official_distro() -> None:
    """Install opentelemetry-distro (no dependencies) into a private directory, once."""
    if (OFFICIAL_SITE / "opentelemetry" / "distro").exists():
        return
    subprocess.run(
        [
            str(BIN / "pip"),
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(OFFICIAL_SITE),
            "opentelemetry-distro==0.66b1",
        ],
        check=True,
        timeout=300,
    )


def variants(gateway: str, sink: str, *, ablations: bool = False) -> list[Variant]:
    """bare, official and otel-logkit, with the same app, gateway and sink (plus ablations)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGKIT_", "PYTEST_", "PYTHONPATH"))}
    base.update(BENCH_GATEWAY_URL=gateway, OTEL_SERVICE_NAME="bench", OTEL_EXPORTER_OTLP_ENDPOINT=sink)
    official = {
        **base,
        "PYTHONPATH": str(OFFICIAL_SITE),
        "OTEL_PYTHON_DISTRO": "distro",
        "OTEL_PYTHON_CONFIGURATOR": "configurator",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    logkit = {**base, "LOGKIT_ENV": "test", "LOGKIT_GATEWAYS": "payment=127.0.0.1"}
    logkit_prefix = [str(BIN / "otel-logkit-instrument")]
    result = [
        Variant("bare", [], base),
        Variant("opentelemetry-instrument", [str(BIN / "opentelemetry-instrument")], official),
        Variant("otel-logkit-instrument", logkit_prefix, logkit),
        # What export costs: the same run exporting nothing, and exporting from the app's threads.
        Variant(
            "  logkit, no export",
            logkit_prefix,
            {**logkit, "OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"},
        ),
        Variant("  logkit, in-process export", logkit_prefix, {**logkit, "LOGKIT_EXPORT_PROCESS": "false"}),
    ]
    if ablations:
        # Where the time goes: the same otel-logkit run with one OTLP export off.
        result += [
            Variant("  logkit, no log export", logkit_prefix, {**logkit, "OTEL_LOGS_EXPORTER": "none"}),
            Variant("  logkit, no span export", logkit_prefix, {**logkit, "OTEL_TRACES_EXPORTER": "none"}),
            Variant("  logkit, LOGKIT_GC_FREEZE", logkit_prefix, {**logkit, "LOGKIT_GC_FREEZE": "true"}),
            Variant(
                "  logkit, 10% sampled",
                logkit_prefix,
                {**logkit, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
            ),
        ]
    return result


def start(variant: Variant, port: int, stdout: Any = subprocess.DEVNULL) -> tuple[subprocess.Popen[bytes], float]:
    """Start the app; return the process and the seconds until it answered its first request."""
    command = [
        *variant.prefix,
        str(BIN / "uvicorn"),
        "--factory",
        "bench_http:create_app",
        "--app-dir",
        str(ROOT / "bench"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=variant.env, stdout=stdout, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = started + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as response:
                if response.status == 200:
                    return process, time.monotonic() - started
        except OSError:
            time.sleep(0.01)
    stop(process)
    raise RuntimeError(f"{variant.name} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's group, SIGKILL after 10 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by ``pid`` itself and by its descendants (the
    export helper), from ``/proc``."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    descendants, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - descendants
        descendants |= frontier
    return used.get(pid, 0.0), sum(used.get(child, 0.0) for child in descendants)


def wrk(url: str, seconds: float, connections: int, script: str | None) -> tuple[float, float, float]:
    """Run wrk; return (requests/s, p50 ms, p99 ms)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    if script:
        command[1:1] = ["-s", script]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return rps, _latency(output, "50%"), _latency(output, "99%")


def _latency(output: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    """Run the interleaved rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per endpoint, variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--ablations", action="store_true", help="also otel-logkit with OTLP exports off")
    parser.add_argument("--skip-official", action="store_true", help="leave opentelemetry-instrument out")
    args = parser.parse_args()
    ensure_official_distro()
    budget = args.rounds * (9 if args.ablations else 5) * (2 * args.seconds + 15) + 60
    gateway_port, sink_port = free_port(), free_port()
    helpers = [
        subprocess.Popen([sys.executable, __file__, "--gateway", str(gateway_port), str(budget)]),
        subprocess.Popen([sys.executable, str(ROOT / "bench" / "_sink.py"), str(sink_port), str(budget)]),
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        body = ORDER_BODY.replace('"', '\\"')
        lua.write(f'wrk.method = "POST"\nwrk.body = "{body}"\nwrk.headers["Content-Type"] = "application/json"\n')
    try:
        time.sleep(0.5)
        all_variants = variants(
            f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{sink_port}", ablations=args.ablations
        )
        if args.skip_official:
            all_variants = [v for v in all_variants if v.name != "opentelemetry-instrument"]
        for round_index in range(args.rounds):
            shift = round_index % len(all_variants)
            order = all_variants[shift:] + all_variants[:shift]
            for variant in order:
                port = free_port()
                process, startup = start(variant, port)
                variant.startup.append(startup)
                try:
                    base = f"http://127.0.0.1:{port}"
                    wrk(f"{base}/ping", 1, args.connections, None)  # warm-up
                    wrk(f"{base}/orders", 1, args.connections, lua.name)
                    for endpoint, script in (("/ping", None), ("/orders", lua.name)):
                        app_before, helper_before = tree_cpu(process.pid)
                        result = wrk(f"{base}{endpoint}", args.seconds, args.connections, script)
                        app_after, helper_after = tree_cpu(process.pid)
                        variant.results.setdefault(endpoint, []).append(result)
                        requests = result[0] * args.seconds
                        variant.cpu.setdefault(endpoint, []).append(
                            ((app_after - app_before) / requests * 1e6, (helper_after - helper_before) / requests * 1e6)
                        )
                finally:
                    stop(process)
                print(f"round {round_index + 1}: {variant.name} done", file=sys.stderr)
        report(all_variants, args)
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait(10)
        os.unlink(lua.name)


def report(all_variants: list[Variant], args: argparse.Namespace) -> None:
    """Print medians and ratios to bare uvicorn."""
    bare = all_variants[0]
    print(f"\n{args.rounds} rounds x {args.seconds:g}s per endpoint, wrk -t1 -c{args.connections}, medians\n")
    print(
        f"{'variant':<28}{'endpoint':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x req/s':>9}{'x p99':>8}"
        f"{'app us/req':>12}{'helper us/req':>15}"
    )
    for variant in all_variants:
        for endpoint in ("/ping", "/orders"):
            rps, p50, p99 = (statistics.median(v) for v in zip(*variant.results[endpoint], strict=True))
            bare_rps, _, bare_p99 = (statistics.median(v) for v in zip(*bare.results[endpoint], strict=True))
            app_cpu, helper_cpu = (statistics.median(v) for v in zip(*variant.cpu[endpoint], strict=True))
            print(
                f"{variant.name:<28}{endpoint:<10}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}"
                f"{rps / bare_rps:>9.2f}{p99 / bare_p99:>8.1f}{app_cpu:>12.0f}{helper_cpu:>15.0f}"
            )
    logkit = next(v for v in all_variants if v.name == "otel-logkit-instrument")
    quiet = next(v for v in all_variants if v.name.strip() == "logkit, no export")
    for endpoint in ("/ping", "/orders"):
        exported = statistics.median(r[0] for r in logkit.results[endpoint])
        none = statistics.median(r[0] for r in quiet.results[endpoint])
        print(f"export cost on {endpoint}: exported / no export = {exported / none:.2f}x req/s")
    print()
    bare_start = statistics.median(bare.startup)
    for variant in all_variants:
        start_s = statistics.median(variant.startup)
        print(f"{variant.name:<26}first response after {start_s:.2f}s  ({start_s / bare_start:.2f}x bare)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--gateway":
        asyncio.run(_serve_gateway(int(sys.argv[2]), float(sys.argv[3])))
    else:
        main()
