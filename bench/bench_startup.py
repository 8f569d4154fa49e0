"""Start-up: time to the first answered request, bare uvicorn vs the two instrumentation runners.

Each step is measured on its own, in two environments: the project's ``.venv`` (many installed
distributions: entry-point scanning reads every one of them) and a small venv holding only
otel-logkit and the app's packages (created on first run under
``~/.cache/otel-logkit-bench/startup-small``; otel-logkit is reinstalled from this checkout,
without its dependencies, on every run).

Steps, per environment:
- runner: the launcher's own process before it execs the command (``LAUNCHER /bin/true`` minus a
  bare ``/bin/true``);
- child: what the sitecustomize adds to an interpreter's start (``python -c pass`` with and without
  the launcher's PYTHONPATH), and that time split into imports / entry-point scan / distro /
  configurator (``otel_logkit.setup.configure``) / instrumentors;
- imports: the largest imports under the sitecustomize (``python -X importtime``);
- first response: spawn to the first answered ``GET /ping`` on 127.0.0.1 for bare ``uvicorn``,
  ``opentelemetry-instrument uvicorn`` and ``otel-logkit-instrument uvicorn``, with the exporters
  ``none`` and ``otlp`` (towards a closed local port), and the ratio to bare uvicorn of the same run;
  also the CPU time the server had used by then (the launcher's exec keeps the pid), which
  another process's load on a shared machine does not stretch.

Run: ``.venv/bin/python bench/bench_startup.py [--rounds 7] [--skip-small] [--exporters none,otlp]
[--steps runner,child,imports,first]``.
This is a benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SMALL_VENV = Path.home() / ".cache" / "otel-logkit-bench" / "startup-small"
APP_PACKAGES = ("fastapi", "uvicorn")

_OFFICIAL_SPLIT = """
import json, time
T = time.perf_counter
t = [T()]
from opentelemetry.instrumentation.auto_instrumentation import _load
t.append(T())
from opentelemetry.util._importlib_metadata import entry_points
entry_points(group="opentelemetry_distro")  # the one scan; the runner caches it for every group
t.append(T())
distro = _load._load_distro()
distro.configure()
t.append(T())
_load._load_configurators()
t.append(T())
_load._load_instrumentors(distro)
t.append(T())
print(json.dumps([b - a for a, b in zip(t, t[1:])]))
"""

_LOGKIT_SPLIT = """
import json, time
T = time.perf_counter
t = [T()]
from otel_logkit import _autoinit
t.append(T())
groups = _autoinit.entry_point_groups()
t.append(T())
_autoinit.set_defaults()
t.append(T())
_autoinit.configure_or_exit()
t.append(T())
_autoinit.load_instrumentors(groups)
t.append(T())
print(json.dumps([b - a for a, b in zip(t, t[1:])]))
"""
SPLIT_STEPS = ("imports", "entry-point scan", "distro", "configurator", "instrumentors")


def _env(bindir: Path, exporters: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGKIT_", "PYTHON"))}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["OTEL_SERVICE_NAME"] = "bench"
    env["LOGKIT_ENV"] = "prod"
    if exporters == "none":
        env["OTEL_TRACES_EXPORTER"] = env["OTEL_LOGS_EXPORTER"] = "none"
    else:
        env["OTEL_TRACES_EXPORTER"] = env["OTEL_LOGS_EXPORTER"] = "otlp"
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{_free_port()}"  # nothing listens
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wall(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        args, env=env, cwd=BENCH, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False
    )
    return time.perf_counter() - started


def _median(measure: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Median and minimum of ``rounds`` measurements (the machine may be shared: both matter)."""
    runs = [measure() for _ in range(rounds)]
    return statistics.median(runs), min(runs)


def _sitecustomize_dirs(bindir: Path) -> dict[str, str]:
    """The directory each launcher puts first on PYTHONPATH (ours only once it exists)."""
    code = (
        "import importlib.util, json, os\n"
        "from opentelemetry.instrumentation import auto_instrumentation as a\n"
        "dirs = {'opentelemetry-instrument': os.path.dirname(a.__file__)}\n"
        "spec = importlib.util.find_spec('otel_logkit._bootstrap')\n"
        "if spec is not None and spec.origin: dirs['otel-logkit-instrument'] = os.path.dirname(spec.origin)\n"
        "print(json.dumps(dirs))\n"
    )
    out = subprocess.run([str(bindir / "python"), "-c", code], capture_output=True, text=True, check=True, timeout=60)
    dirs: dict[str, str] = json.loads(out.stdout)
    dirs.setdefault("otel-logkit-instrument", dirs["opentelemetry-instrument"])  # before: the official one
    return dirs


def bench_runner(bindir: Path, rounds: int) -> None:
    """The launcher's own process: ``LAUNCHER /bin/true`` minus ``/bin/true``."""
    env = _env(bindir, "none")
    true = "/bin/true"
    bare, bare_min = _median(lambda: _wall([true], env), rounds)
    print("runner process before exec (LAUNCHER /bin/true minus /bin/true), ms: median (min)")
    for launcher in ("opentelemetry-instrument", "otel-logkit-instrument"):
        for options in ([], ["--service_name", "bench"]):
            args = [str(bindir / launcher), *options, true]
            took, least = _median(lambda args=args: _wall(args, env), rounds)  # type: ignore[misc]
            name = " ".join([launcher, *options[:1]])
            print(f"  {name:40} {1000 * (took - bare):7.1f} ({1000 * (least - bare_min):.1f})")


def bench_child(bindir: Path, rounds: int, exporters: str) -> None:
    """What the sitecustomize adds to an interpreter's start, and its split."""
    python = str(bindir / "python")
    dirs = _sitecustomize_dirs(bindir)
    distro = {"OTEL_PYTHON_DISTRO": "otel_logkit", "OTEL_PYTHON_CONFIGURATOR": "otel_logkit"}
    bare, bare_min = _median(lambda: _wall([python, "-c", "pass"], _env(bindir, exporters)), rounds)
    print(f"child start-up (exporters {exporters}), ms: python -c pass = {1000 * bare:.1f}, plus: median (min)")
    for launcher, directory in dirs.items():
        env = _env(bindir, exporters, PYTHONPATH=directory, **(distro if launcher.startswith("otel-logkit") else {}))
        took, least = _median(lambda env=env: _wall([python, "-c", "pass"], env), rounds)  # type: ignore[misc]
        print(f"  sitecustomize of {launcher:24} {1000 * (took - bare):7.1f} ({1000 * (least - bare_min):.1f})")
    splits = {"official initialize()": _OFFICIAL_SPLIT}
    if "_bootstrap" in dirs["otel-logkit-instrument"]:
        splits["otel-logkit bootstrap"] = _LOGKIT_SPLIT
    for name, code in splits.items():
        env = _env(bindir, exporters, **distro)
        runs = []
        for _ in range(rounds):
            out = subprocess.run(
                [python, "-c", code], env=env, cwd=BENCH, capture_output=True, text=True, timeout=60, check=False
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        medians = [1000 * statistics.median(run[i] for run in runs) for i in range(len(SPLIT_STEPS))]
        parts = "  ".join(f"{step} {ms:.1f}" for step, ms in zip(SPLIT_STEPS, medians, strict=True))
        print(f"  {name:22} total {sum(medians):6.1f}: {parts}")


def bench_imports(bindir: Path, exporters: str, top: int = 12) -> None:
    """The largest imports under each sitecustomize (``-X importtime``, cumulative, depth <= 3)."""
    python = str(bindir / "python")
    distro = {"OTEL_PYTHON_DISTRO": "otel_logkit", "OTEL_PYTHON_CONFIGURATOR": "otel_logkit"}
    for launcher, directory in _sitecustomize_dirs(bindir).items():
        env = _env(bindir, exporters, PYTHONPATH=directory, **(distro if launcher.startswith("otel-logkit") else {}))
        out = subprocess.run(
            [python, "-X", "importtime", "-c", "pass"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        rows = []
        for line in out.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
            if match and 2 < len(match[3]) <= 7 and not match[4].endswith(".models"):  # three levels below
                rows.append((int(match[2]) / 1000, match[4]))
        total = next((int(m[1]) / 1000 for m in re.finditer(r"\|\s+(\d+) \|   sitecustomize$", out.stderr, re.M)), 0.0)
        rows.sort(reverse=True)
        print(f"imports under the sitecustomize of {launcher} (exporters {exporters}): {total:.0f} ms in all")
        print("  " + ", ".join(f"{name} {ms:.0f}" for ms, name in rows[:top]))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _first_response(args: list[str], env: dict[str, str], port: int, timeout: float = 60.0) -> tuple[float, float]:
    """Seconds from spawn to the first answered ``GET /ping`` on 127.0.0.1:``port``, and the CPU
    seconds the process had used by then (robust on a shared machine: other processes' load
    stretches the wall time, not the CPU time)."""
    request = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    started = time.perf_counter()
    process = subprocess.Popen(
        args, env=env, cwd=BENCH, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while time.perf_counter() - started < timeout:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(request)
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return time.perf_counter() - started, _cpu_seconds(process.pid)
            except OSError:
                time.sleep(0.002)
            if process.poll() is not None:
                break
        return float("nan"), float("nan")
    finally:
        os.killpg(process.pid, 15)
        process.wait(20)


def bench_first_response(bindir: Path, rounds: int, exporters: str) -> None:
    """Spawn to the first answered request, the variants interleaved round by round."""
    variants = {
        "uvicorn": [],
        "opentelemetry-instrument": [str(bindir / "opentelemetry-instrument")],
        "otel-logkit-instrument": [str(bindir / "otel-logkit-instrument")],
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, prefix in variants.items():
            port = _free_port()
            app = [str(bindir / "uvicorn"), "startup_app:app", "--host", "127.0.0.1", "--port", str(port)]
            results[name].append(_first_response([*prefix, *app], _env(bindir, exporters), port))
    bare = statistics.median(wall for wall, _ in results["uvicorn"])
    bare_cpu = statistics.median(cpu for _, cpu in results["uvicorn"])
    print(f"first answered request (exporters {exporters}), median of {rounds}: wall s, ratio (min); CPU s, ratio")
    for name, runs in results.items():
        took = statistics.median(wall for wall, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        least = min(wall for wall, _ in runs)
        print(f"  {name:26} {took:6.3f} {took / bare:5.2f}x ({least:.3f})   {cpu:6.3f} {cpu / bare_cpu:5.2f}x")


def small_venv() -> Path:
    """A venv with only otel-logkit (from this checkout) and the app's packages; its bin dir."""
    python = SMALL_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SMALL_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT), *APP_PACKAGES], check=True)
    # this checkout's code, not an editable install (whose import finder costs time at start-up)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return python.parent


def _distributions(bindir: Path) -> int:
    code = "import importlib.metadata as m; print(len(list(m.distributions())))"
    return int(subprocess.run([str(bindir / "python"), "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    """Run every step in each environment and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-small", action="store_true", help="only the project's .venv")
    parser.add_argument("--exporters", default="none,otlp", help="comma-separated: none, otlp")
    parser.add_argument("--steps", default="runner,child,imports,first", help="comma-separated subset")
    args = parser.parse_args()
    environments = {"project .venv": Path(sys.executable).parent}
    if not args.skip_small:
        environments["small venv"] = small_venv()
    for title, bindir in environments.items():
        print(f"== {title} ({_distributions(bindir)} distributions)")
        steps = args.steps.split(",")
        if "runner" in steps:
            bench_runner(bindir, args.rounds)
        for exporters in args.exporters.split(","):
            if "child" in steps:
                bench_child(bindir, args.rounds, exporters)
            if "imports" in steps:
                bench_imports(bindir, exporters)
            if "first" in steps:
                bench_first_response(bindir, args.rounds, exporters)


if __name__ == "__main__":
    main()
