"""The ops stack's costs, on 127.0.0.1 with a real PostgreSQL.

1. ``POST /orders`` of the example shop (one product lookup, one insert; payment simulated) on
   SQLite and on PostgreSQL (psycopg 3): bare uvicorn vs ``otel-logkit-instrument`` with
   ``LOGKIT_SQL_COMMENTER`` off and on. Variants interleaved per round, medians reported.
2. ``GET /ping`` (bench_http's app) under otel-logkit: in-process OTLP log export vs the
   stdout-scrape path (``OTEL_LOGS_EXPORTER=none``; the collector's filelog overlay reads stdout).
3. Per statement on PostgreSQL, psycopg 3 directly: the same primary-key SELECT with a constant
   text (auto-prepared after 5 runs: parse and plan once), constant text never prepared, and a
   text that differs per statement as a sqlcommenter comment makes it (never prepared, and
   psycopg's prepared-statement LRU churns).

Load: ``wrk`` (``apt-get install -y wrk``); spans and logs go to a local OTLP sink, stdout to
/dev/null. Run: ``.venv/bin/python bench/bench_stack.py [--seconds 5] [--rounds 3]``.
A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from bench_http import BIN, ROOT, free_port, stop, wrk  # noqa: E402

from examples.stack.processes import Postgres  # noqa: E402

ORDER_LUA = """
wrk.method = "POST"
wrk.body = '{"product_id": 2, "quantity": 1, "card": {"number": "4242424242424242", "cvv": "737"}}'
wrk.headers["Content-Type"] = "application/json"
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGKIT_", "SHOP_", "PYTEST_"))}
    env.update(OTEL_SERVICE_NAME="shop", LOGKIT_ENV="test", **extra)
    return env


def _serve(args: list[str], env: dict[str, str], port: int, probe: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{args} did not start")


def shop_orders(
    database_url: str, sink: str, seconds: float, rounds: int, lua: str
) -> dict[str, list[tuple[float, float, float]]]:
    """POST /orders per variant and round: (requests/s, p50 ms, p99 ms)."""
    logkit = [str(BIN / "otel-logkit-instrument")]
    variants = {
        "bare": ([], {}),
        "logkit, commenter off": (logkit, {"LOGKIT_SQL_COMMENTER": "false"}),
        "logkit, commenter on": (logkit, {"LOGKIT_SQL_COMMENTER": "true"}),
    }
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(rounds):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            prefix, extra = variants[name]
            port = free_port()
            args = [*prefix, str(BIN / "uvicorn"), "examples.shop.main:app", "--host", "127.0.0.1", "--port", str(port)]
            args += ["--no-access-log", "--log-level", "warning"]
            env = _env(SHOP_DATABASE_URL=database_url, OTEL_EXPORTER_OTLP_ENDPOINT=sink, **extra)
            process = _serve(args, env, port, "/products")  # also creates the schema
            try:
                wrk(f"http://127.0.0.1:{port}/orders", 1, 8, lua)  # warm-up: pools, caches
                results[name].append(wrk(f"http://127.0.0.1:{port}/orders", seconds, 8, lua))
            finally:
                stop(process)
    return results


def ping_export(sink: str, seconds: float, rounds: int) -> dict[str, list[tuple[float, float, float]]]:
    """GET /ping under otel-logkit: OTLP log export in-process vs stdout only."""
    variants = {"OTLP log export": {}, "OTEL_LOGS_EXPORTER=none": {"OTEL_LOGS_EXPORTER": "none"}}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    for round_index in range(rounds):
        names = list(variants)[::-1] if round_index % 2 else list(variants)
        for name in names:
            port = free_port()
            args = [str(BIN / "otel-logkit-instrument"), str(BIN / "uvicorn"), "--factory", "bench_http:create_app"]
            args += ["--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port)]
            args += ["--no-access-log", "--log-level", "warning"]
            env = _env(BENCH_GATEWAY_URL="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_ENDPOINT=sink, **variants[name])
            process = _serve(args, env, port, "/ping")
            try:
                wrk(f"http://127.0.0.1:{port}/ping", 1, 16, None)
                results[name].append(wrk(f"http://127.0.0.1:{port}/ping", seconds, 16, None))
            finally:
                stop(process)
    return results


def statement_costs(conninfo: str, count: int = 5000) -> dict[str, float]:
    """Microseconds per primary-key SELECT round trip on one psycopg 3 connection."""
    import psycopg

    query = "SELECT id, name, price_cents FROM products WHERE id = %s"
    costs: dict[str, float] = {}
    cases = {
        "constant text, auto-prepared (commenter off)": (5, False),
        "constant text, never prepared": (None, False),
        "text unique per statement (commenter on)": (5, True),
    }
    for name, (threshold, unique) in cases.items():
        with psycopg.connect(conninfo, prepare_threshold=threshold) as conn:
            for i in range(200):  # warm-up
                conn.execute(query, (i % 3 + 1,))
            started = time.perf_counter()
            for i in range(count):
                text = query + f" /*request_id='{i:032x}',traceparent='00-{i:032x}-{i:016x}-01'*/" if unique else query
                conn.execute(text, (i % 3 + 1,)).fetchone()
            costs[name] = (time.perf_counter() - started) / count * 1e6
    return costs


def _table(title: str, results: dict[str, list[tuple[float, float, float]]], base: str) -> None:
    print(f"\n{title}")
    print(f"  {'variant':32} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'rps vs ' + base:>16}")
    base_rps = statistics.median(r[0] for r in results[base])
    for name, runs in results.items():
        rps = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        print(f"  {name:32} {rps:8.0f} {p50:8.2f} {p99:8.2f} {rps / base_rps:16.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_sink.py"), str(sink_port), "1800"])
    postgres = Postgres(min_duration_ms=250)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(ORDER_LUA)
    try:
        postgres.start()
        sink_url = f"http://127.0.0.1:{sink_port}"
        print(f"nproc={os.cpu_count()} seconds={args.seconds:g} rounds={args.rounds} (medians)")
        for label, url in (("SQLite (in memory)", "sqlite://"), ("PostgreSQL 15, psycopg 3", postgres.url)):
            _table(f"POST /orders, {label}", shop_orders(url, sink_url, args.seconds, args.rounds, lua.name), "bare")
        _table("GET /ping, otel-logkit", ping_export(sink_url, args.seconds, args.rounds), "OTLP log export")
        print("\nPer statement, PostgreSQL, psycopg 3 (primary-key SELECT, one connection)")
        for name, micros in statement_costs(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=shop").items():
            print(f"  {name:48} {micros:7.1f} us")
    finally:
        os.unlink(lua.name)
        postgres.stop()
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
