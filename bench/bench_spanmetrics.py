"""Collector CPU and memory with the span-metrics overlay against without, at a fixed span rate.

Two collector configurations, each a fresh ``otelcol-logkit`` process on 127.0.0.1, rounds
interleaved: the base config alone (traces counted by ``debug``) and the base plus
``collector/connectors/spanmetrics.yaml``. A sender in this process posts OTLP/HTTP protobuf
trace requests at a fixed rate (default 2,000 server spans/s in 10 requests of 200), spans shaped
like the HTTP instrumentations' (``GET <route>``, ``http.route`` from 20 routes, status codes 200,
404 and 500, durations from 1 ms to 2 s). After a warm-up, the collector's CPU time (utime +
stime from /proc) and resident memory (sampled every second) are measured for the window; the
span-metrics run also counts the series its Prometheus exporter serves.

Run: ``.venv/bin/python bench/bench_spanmetrics.py [--rate 2000] [--seconds 60] [--warmup 10]
[--rounds 1]``; the binary is ``$OTELCOL_BIN`` or ``bin/otelcol-logkit`` (``make collector``).
This is a benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "collector" / "config.yaml"
OVERLAY = ROOT / "collector" / "connectors" / "spanmetrics.yaml"
ROUTES = [f"/api/v1/resource{i}/{{item_id}}" for i in range(20)]
STATUSES = [200] * 90 + [404] * 7 + [500] * 3
SPANS_PER_REQUEST = 200
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kv(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def _payloads(count: int, seed: int = 7) -> list[bytes]:
    """``count`` serialized requests of SPANS_PER_REQUEST server spans each (reused in turn)."""
    rng = random.Random(seed)
    resource = Resource(
        attributes=[
            _kv("service.name", "bench"),
            _kv("service.instance.id", "bench-1"),
            _kv("telemetry.sdk.language", "python"),
        ]
    )
    payloads = []
    for _ in range(count):
        now = time.time_ns()
        spans = []
        for _ in range(SPANS_PER_REQUEST):
            route = rng.choice(ROUTES)
            status = rng.choice(STATUSES)
            duration_ns = int(rng.lognormvariate(3.0, 1.2) * 1e6)  # median ~20 ms
            spans.append(
                Span(
                    trace_id=rng.randbytes(16),
                    span_id=rng.randbytes(8),
                    name=f"GET {route}",
                    kind=Span.SPAN_KIND_SERVER,
                    start_time_unix_nano=now - duration_ns,
                    end_time_unix_nano=now,
                    attributes=[
                        _kv("http.request.method", "GET"),
                        _kv("http.route", route),
                        _kv("http.response.status_code", status),
                        _kv("url.scheme", "http"),
                    ],
                    status=Status(code=Status.STATUS_CODE_ERROR if status >= 500 else Status.STATUS_CODE_UNSET),
                )
            )
        request = ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
        )
        payloads.append(request.SerializeToString())
    return payloads


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Result:
    variant: str
    spans_per_s: float
    cpu_percent: float
    rss_median_mib: float
    rss_max_mib: float
    series: int | None = None


@dataclass
class CollectorRun:
    binary: str
    configs: list[Path]
    workdir: Path
    http_port: int = field(default_factory=_free_port)
    prometheus_port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGKIT_"))},
            "LOGKIT_COLLECTOR_STORAGE_DIR": str(self.workdir / "queue"),
            "LOGKIT_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{_free_port()}",
            "LOGKIT_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "LOGKIT_HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{_free_port()}",
            "LOGKIT_COLLECTOR_METRICS_PORT": str(_free_port()),
            "LOGKIT_PROMETHEUS_EXPORTER_ENDPOINT": f"127.0.0.1:{self.prometheus_port}",
        }
        args = [self.binary]
        for config in self.configs:
            args += ["--config", str(config)]
        log = (self.workdir / "collector.log").open("ab")
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _post(f"http://127.0.0.1:{self.http_port}", ExportTraceServiceRequest().SerializeToString())
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"collector did not start: {self.workdir / 'collector.log'}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def series(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prometheus_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(1 for line in text.splitlines() if line.startswith("traces_span_metrics_"))


def _post(base_url: str, payload: bytes) -> None:
    request = urllib.request.Request(
        f"{base_url}/v1/traces", data=payload, headers={"Content-Type": "application/x-protobuf"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _send(run: CollectorRun, payloads: list[bytes], rate: float, seconds: float, rss: list[float] | None) -> int:
    """Post at ``rate`` spans/s for ``seconds``; sample RSS once a second into ``rss``; spans sent."""
    assert run.process is not None
    interval = SPANS_PER_REQUEST / rate
    start = time.monotonic()
    sent = 0
    next_sample = start
    while (now := time.monotonic()) < start + seconds:
        due = start + (sent / SPANS_PER_REQUEST) * interval
        if now < due:
            time.sleep(min(due - now, 0.05))
        else:
            _post(f"http://127.0.0.1:{run.http_port}", payloads[(sent // SPANS_PER_REQUEST) % len(payloads)])
            sent += SPANS_PER_REQUEST
        if rss is not None and now >= next_sample:
            rss.append(_rss_mib(run.process.pid))
            next_sample += 1.0
    return sent


def measure(binary: str, variant: str, configs: list[Path], args: argparse.Namespace, payloads: list[bytes]) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-spanmetrics-") as tmp:
        run = CollectorRun(binary, configs, Path(tmp))
        try:
            run.start()
            assert run.process is not None
            _send(run, payloads, args.rate, args.warmup, None)
            rss: list[float] = []
            cpu_before, wall_before = _cpu_seconds(run.process.pid), time.monotonic()
            sent = _send(run, payloads, args.rate, args.seconds, rss)
            cpu = _cpu_seconds(run.process.pid) - cpu_before
            wall = time.monotonic() - wall_before
            series = run.series() if OVERLAY in configs else None
        finally:
            run.stop()
    return Result(variant, sent / wall, 100 * cpu / wall, statistics.median(rss), max(rss), series)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="spans per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=10.0, help="unmeasured seconds before the window")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    binary = os.environ.get("OTELCOL_BIN") or str(ROOT / "bin" / "otelcol-logkit")
    payloads = _payloads(50)
    variants = {"base (traces to debug)": [BASE], "base + spanmetrics overlay": [BASE, OVERLAY]}
    results: dict[str, list[Result]] = {name: [] for name in variants}
    for round_no in range(args.rounds):
        order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
        for name in order:
            result = measure(binary, name, variants[name], args, payloads)
            results[name].append(result)
            print(result, flush=True)
    base_name, overlay_name = list(variants)
    print(f"\n{args.rate:.0f} spans/s, {args.seconds:.0f} s window, {args.rounds} round(s); medians over rounds")
    print(
        "| variant | spans/s sent | collector CPU % | ratio | RSS median MiB | RSS max MiB | ratio (median) | series |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base_cpu = statistics.median(r.cpu_percent for r in results[base_name])
    base_rss = statistics.median(r.rss_median_mib for r in results[base_name])
    for name in (base_name, overlay_name):
        rs = results[name]
        cpu = statistics.median(r.cpu_percent for r in rs)
        rss = statistics.median(r.rss_median_mib for r in rs)
        series = rs[-1].series
        print(
            f"| {name} | {statistics.median(r.spans_per_s for r in rs):.0f} | {cpu:.1f} | {cpu / base_cpu:.2f} "
            f"| {rss:.0f} | {max(r.rss_max_mib for r in rs):.0f} | {rss / base_rss:.2f} "
            f"| {series if series is not None else '—'} |"
        )


if __name__ == "__main__":
    main()
