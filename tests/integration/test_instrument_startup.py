"""``otel-logkit-instrument``'s fast start: it execs the command with otel-logkit's sitecustomize.

Real commands as subprocesses on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from otel_logkit._autoinit import BOOTSTRAP_DIR
from tests.support.processes import BIN, ROOT, OutputReader, base_env, free_port, running, stop

QUIET = {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "LOGKIT_ENV": "test"}
_PROBE = (
    "import json, os, sys; "
    "print(json.dumps({'sitecustomize': sys.modules['sitecustomize'].__file__, 'path': os.environ['PYTHONPATH']}))"
)


def shop(port: int, *extra: str, runner: str = "otel-logkit-instrument", options: tuple[str, ...] = ()) -> list[str]:
    """``RUNNER [OPTIONS] uvicorn examples.shop.main:app`` on 127.0.0.1:``port``."""
    # the official runner looks on PATH only; otel-logkit-instrument also beside its Python
    command = "uvicorn" if runner == "otel-logkit-instrument" else str(BIN / "uvicorn")
    uvicorn = [command, "examples.shop.main:app", "--host", "127.0.0.1", "--port", str(port), *extra]
    return [str(BIN / runner), *options, *uvicorn]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line parsed as one JSON object."""
    return [json.loads(line) for line in text.splitlines()]


def access_lines(lines: list[dict[str, Any]], route: str = "/products") -> list[dict[str, Any]]:
    """The access lines of ``route`` that carry the server span's trace id."""
    return [line for line in lines if line.get("route") == route and "status_code" in line and "trace_id" in line]


def serve_products(args: list[str], env: dict[str, str], port: int, requests: int = 1) -> tuple[str, str]:
    """Start ``args``, GET ``/products`` ``requests`` times, SIGTERM it; return (stdout, stderr)."""
    with running(args, env, port=port) as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(requests):
                assert 200 == client.get("/products").status_code
        return stop(process, timeout=30)


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded) and capture its output."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=30, check=False)


def test_fast_path_instruments_the_app() -> None:
    """Without runner options: app lines with trace ids, one access line per request."""
    port = free_port()
    out, err = serve_products(shop(port), base_env(OTEL_SERVICE_NAME="shop", **QUIET), port)
    lines = json_lines(out)
    assert not err.strip(), err
    [access] = access_lines(lines)
    assert 200 == access["status_code"]
    assert "shop" == access["service"]
    assert len(access["trace_id"]) == 32


def test_command_gets_otel_logkit_sitecustomize_and_the_users_path(tmp_path: Path) -> None:
    """The command starts with otel-logkit's sitecustomize first, then the cwd, then the user's PYTHONPATH."""
    result = run(
        [str(BIN / "otel-logkit-instrument"), str(BIN / "python"), "-c", _PROBE],
        base_env(PYTHONPATH=str(tmp_path), **QUIET),
    )
    assert 0 == result.returncode, result.stderr
    probe = json.loads(result.stdout.splitlines()[-1])
    assert os.path.join(BOOTSTRAP_DIR, "sitecustomize.py") == probe["sitecustomize"]
    assert [BOOTSTRAP_DIR, str(ROOT), str(tmp_path)] == probe["path"].split(os.pathsep)


def test_runner_option_sets_its_variable_for_the_app() -> None:
    """``--service_name`` (parsed by the official runner) reaches the app's lines."""
    port = free_port()
    args = shop(port, options=("--service_name", "from-option"))
    out, _ = serve_products(args, base_env(OTEL_SERVICE_NAME="from-env", **QUIET), port)
    [access] = access_lines(json_lines(out))
    assert "from-option" == access["service"]


def test_runner_options_path_uses_otel_logkit_sitecustomize_too() -> None:
    """With options, the command still gets otel-logkit's sitecustomize (not the official one)."""
    result = run(
        [str(BIN / "otel-logkit-instrument"), "--service_name", "x", str(BIN / "python"), "-c", _PROBE],
        base_env(**QUIET),
    )
    assert 0 == result.returncode, result.stderr
    probe = json.loads(result.stdout.splitlines()[-1])
    assert os.path.join(BOOTSTRAP_DIR, "sitecustomize.py") == probe["sitecustomize"]
    assert [BOOTSTRAP_DIR, str(ROOT)] == probe["path"].split(os.pathsep)


def test_version_option_is_the_runners() -> None:
    """``--version`` is answered by the official runner's parser."""
    result = run([str(BIN / "otel-logkit-instrument"), "--version"], base_env())
    assert 0 == result.returncode
    assert result.stdout.startswith("otel-logkit-instrument ")


def test_no_command_is_a_usage_error() -> None:
    """Without a command: the runner's usage on stderr, exit status 2."""
    result = run([str(BIN / "otel-logkit-instrument")], base_env())
    assert 2 == result.returncode
    assert "usage:" in result.stderr


def test_two_workers_are_both_instrumented() -> None:
    """``--workers 2``: each worker, started by uvicorn, gets the sitecustomize through PYTHONPATH."""
    port = free_port()
    out, _ = serve_products(shop(port, "--workers", "2"), base_env(**QUIET), port, requests=20)
    lines = json_lines(out)
    started = [line for line in lines if line["message"].startswith("Started server process")]
    assert 2 == len(started)
    assert 20 == len(access_lines(lines))


def test_reload_child_is_instrumented(tmp_path: Path) -> None:
    """``--reload``: the server child, started by the reloader, writes access lines with trace ids."""
    watched = tmp_path / "watched"
    watched.mkdir()
    port = free_port()
    args = shop(port, "--reload", "--reload-dir", str(watched))
    with running(args, base_env(**QUIET), port=port) as process:
        output = OutputReader(process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert 200 == client.get("/products").status_code
        output.wait_for('"route":"/products"', timeout=10)
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        lines = json_lines(output.finish())
    assert 1 == len(access_lines(lines))


def test_plain_opentelemetry_instrument_still_instruments_the_app() -> None:
    """Plain ``opentelemetry-instrument uvicorn`` finds otel-logkit through its entry points."""
    port = free_port()
    args = shop(port, runner="opentelemetry-instrument")
    out, err = serve_products(args, base_env(OTEL_SERVICE_NAME="plain", **QUIET), port)
    [access] = access_lines(json_lines(out))
    assert "plain" == access["service"]
    assert "Failed to auto initialize" not in err


_FAKE_INSTRUMENTOR = """
import sys
sys.stderr.write("imported {name}\\n")

class Instrumentor:
    is_instrumented_by_opentelemetry = False

    def instrument(self, **kwargs):
        sys.stderr.write("instrumented {name}\\n")
"""


def _fake_instrumentation(site: Path, name: str, library: str) -> None:
    """A distribution with an instrumentor entry point for ``library`` (its ``instruments`` extra)."""
    (site / f"fake_{name}.py").write_text(_FAKE_INSTRUMENTOR.format(name=name))
    info = site / f"fake_{name}-1.0.dist-info"
    info.mkdir()
    extra = 'extra == "instruments"'
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: fake-{name}\nVersion: 1.0\nProvides-Extra: instruments\n"
        f"Requires-Dist: {library}; {extra}\n"
    )
    (info / "entry_points.txt").write_text(f"[opentelemetry_instrumentor]\n{name} = fake_{name}:Instrumentor\n")


@pytest.mark.parametrize("runner", ["otel-logkit-instrument", "opentelemetry-instrument"])
def test_other_instrumentations_only_when_their_library_is_installed(tmp_path: Path, runner: str) -> None:
    """A third-party instrumentor is applied when its library is installed, never imported otherwise."""
    _fake_instrumentation(tmp_path, "present", "structlog")
    _fake_instrumentation(tmp_path, "absent", "no-such-library-xyz")
    result = run(
        [str(BIN / runner), str(BIN / "python"), "-c", "import sys; print('fake_absent' in sys.modules)"],
        base_env(PYTHONPATH=str(tmp_path), **QUIET),
    )
    assert 0 == result.returncode, result.stderr
    assert "False" == result.stdout.strip()
    assert ["imported present", "instrumented present"] == result.stderr.split("\n")[:2]
    assert "absent" not in result.stderr


def test_disabled_instrumentations_are_skipped(tmp_path: Path) -> None:
    """``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` names an instrumentor: it is not even imported."""
    _fake_instrumentation(tmp_path, "present", "structlog")
    result = run(
        [str(BIN / "otel-logkit-instrument"), str(BIN / "python"), "-c", "pass"],
        base_env(PYTHONPATH=str(tmp_path), OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="present", **QUIET),
    )
    assert 0 == result.returncode, result.stderr
    assert "present" not in result.stderr
