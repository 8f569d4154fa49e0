"""Collector down under load: request latency, memory of the app and its export helper, drop reports.

One otel-logkit-instrument uvicorn (bench_http's app, ``GET /ping`` and ``POST /orders`` alternately
under ``wrk``) per export path, in windows of ``--window`` seconds: the sink up, then down for
``--outage`` seconds (nothing listening on the endpoint), then up again. Per window: requests/s,
p50/p99, and the RSS of the app and of its helper (from ``/proc``). At the end: how many
"dropped" and "is failing" lines the run wrote (the promise: one per outage, one per 10 s of
drops). Bare uvicorn's latency in the same run is the reference.

Run: ``.venv/bin/python bench/bench_outage.py [--outage 30] [--window 10]`` (needs ``wrk``).
This is a benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http

ROOT = Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def helper_of(pid: int) -> int | None:
    """The export helper whose parent is ``pid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"otel_logkit.export_helper" not in (entry / "cmdline").read_bytes():
                continue
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                return int(entry.name)
        except OSError:
            continue
    return None


def sink(port: int, lifetime: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "_sink.py"), str(port), str(lifetime)])


def run(name: str, env: dict[str, str], prefix: list[str], args: argparse.Namespace, sink_port: int) -> None:
    port = bench_http.free_port()
    variant = bench_http.Variant(name, prefix, env)
    log = tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False)  # noqa: SIM115 - read after the run
    receiver = sink(sink_port, 3600)
    time.sleep(0.3)
    process, _ = bench_http.start(variant, port, stdout=log)
    try:
        base = f"http://127.0.0.1:{port}"
        bench_http.wrk(f"{base}/ping", 1, args.connections, None)
        phases = [("up", args.window), *[("DOWN", args.window)] * max(1, int(args.outage // args.window))]
        phases += [("up again", args.window)]
        for phase, seconds in phases:
            if phase == "DOWN" and receiver.poll() is None:
                receiver.terminate()
                receiver.wait(5)
            if phase == "up again":
                receiver = sink(sink_port, 3600)
                time.sleep(0.3)
            rps, p50, p99 = bench_http.wrk(f"{base}/ping", seconds, args.connections, None)
            helper = helper_of(process.pid)
            app_rss, helper_rss = rss_kib(process.pid), rss_kib(helper) if helper else 0
            print(
                f"{name:<24}{phase:<10}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}"
                f"{app_rss / 1024:>10.1f}{helper_rss / 1024:>12.1f}",
                flush=True,
            )
    finally:
        bench_http.stop(process)
        if receiver.poll() is None:
            receiver.terminate()
            receiver.wait(5)
    log.seek(0)
    lines = [json.loads(line) for line in log.read().splitlines() if line.startswith(b"{")]
    failing = sum(1 for line in lines if "is failing" in str(line.get("message")))
    dropped = [line for line in lines if "dropped" in str(line.get("message"))]
    print(
        f"{name:<24}lines: {failing} 'is failing', {len(dropped)} drop reports "
        f"({sum(int(line.get('dropped', 0)) for line in dropped)} records dropped)"
    )
    os.unlink(log.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    gateway_port, sink_port = bench_http.free_port(), bench_http.free_port()
    gateway = subprocess.Popen([sys.executable, bench_http.__file__, "--gateway", str(gateway_port), "3600"])
    try:
        variants = bench_http.variants(f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{sink_port}")
        chosen = {v.name.strip(): v for v in variants}
        print(f"{'variant':<24}{'sink':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'app MiB':>10}{'helper MiB':>12}")
        bare = chosen["bare"]
        run("bare", bare.env, bare.prefix, argparse.Namespace(**{**vars(args), "outage": 0}), sink_port)
        for name in ("otel-logkit-instrument", "logkit, in-process export"):
            variant = chosen[name]
            run(name, variant.env, variant.prefix, args, sink_port)
    finally:
        gateway.terminate()
        gateway.wait(5)


if __name__ == "__main__":
    main()
