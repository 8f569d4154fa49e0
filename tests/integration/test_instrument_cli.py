"""``otel-logkit-instrument uvicorn ...`` as a subprocess on 127.0.0.1 with a test OTLP receiver."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.support.otlp_receiver import OTLPReceiver, otlp_receiver
from tests.support.processes import BIN, ROOT, OutputReader, base_env, free_port, running, stop

CONTRACT = ("timestamp", "level", "message", "logger", "service", "env")
ORDER = {"product_id": 1, "quantity": 2, "card": {"number": "4242424242424242", "cvv": "123"}}
TRACEPARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def app_command(port: int, *extra: str) -> list[str]:
    """otel-logkit-instrument running the example shop on ``port``."""
    return [
        str(BIN / "otel-logkit-instrument"),
        "uvicorn",
        "examples.shop.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def app_env(receiver: OTLPReceiver | None, **extra: str) -> dict[str, str]:
    """Environment for the shop: service shop, env test, DEBUG, OTLP to the receiver."""
    endpoint = receiver.endpoint if receiver is not None else f"http://127.0.0.1:{free_port()}"
    settings = {
        "OTEL_SERVICE_NAME": "shop",
        "LOGKIT_ENV": "test",
        "LOGKIT_LOG_LEVEL": "DEBUG",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    return base_env(**{**settings, **extra})


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded) and capture its output."""
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False)


def parse_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object with the contract's fields."""
    lines = []
    for raw in stdout.splitlines():
        line = json.loads(raw)
        assert isinstance(line, dict), raw
        missing = [key for key in CONTRACT if key not in line]
        assert not missing, f"{missing} missing in {raw}"
        assert line["level"] == line["level"].upper()
        lines.append(line)
    return lines


def exercise(port: int) -> None:
    """A few requests: a listing, an order, a 404, and one continuing an incoming traceparent."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        assert client.get("/products").status_code == 200
        assert client.post("/orders", json=ORDER).status_code == 201
        assert client.get("/products/99").status_code == 404
        headers = {"traceparent": f"00-{TRACEPARENT_TRACE}-00f067aa0ba902b7-01"}
        assert client.post("/orders", json=ORDER, headers=headers).status_code == 201


def test_every_line_is_json_correlated_with_exported_spans_and_records() -> None:
    """stdout lines (app, stdlib, uvicorn) carry the server span's ids; records match them."""
    port = free_port()
    with otlp_receiver() as receiver, running(app_command(port), app_env(receiver), port=port) as process:
        exercise(port)
        out, err = stop(process)
        assert receiver.wait_for(lambda r: len([s for s in r.spans if s.kind == 2]) >= 4)
    lines = parse_lines(out)
    assert not err.strip(), err
    assert any(line["logger"] == "uvicorn.error" and "Started server process" in line["message"] for line in lines)
    orders = [line for line in lines if line["message"] == "order created"]
    assert len(orders) == 2
    assert orders[1]["trace_id"] == TRACEPARENT_TRACE
    server_spans = {(s.trace_id, s.span_id): s for s in receiver.spans if s.kind == 2}  # SERVER
    for line in lines:
        if "trace_id" in line and line["logger"].startswith("examples"):
            assert (line["trace_id"], line["span_id"]) in server_spans, line
            assert line["service"] == "shop"
            assert line["env"] == "test"
    for line in orders:
        matches = [r for r in receiver.logs if r.body == "order created" and r.trace_id == line["trace_id"]]
        assert len(matches) == 1
        record = matches[0]
        assert line["span_id"] == record.span_id
        assert (record.severity_text, record.severity_number) == ("INFO", 9)
        assert line["order_id"] == record.attributes["order_id"]
        assert isinstance(record.attributes["amount_cents"], int)
        assert record.resource["service.name"] == "shop"
        assert record.resource["deployment.environment.name"] == "test"
    exported_uvicorn = [r for r in receiver.logs if r.attributes.get("logger", "").startswith("uvicorn")]
    assert exported_uvicorn
    assert all(not r.attributes.get("logger", "").startswith("opentelemetry") for r in receiver.logs)


def test_outside_a_span_no_trace_keys() -> None:
    """Start-up lines have no trace_id/span_id keys at all (never zeros)."""
    port = free_port()
    with otlp_receiver() as receiver, running(app_command(port), app_env(receiver), port=port) as process:
        out, _ = stop(process)
    startup = [line for line in parse_lines(out) if "Started server process" in line["message"]]
    assert startup
    assert all("trace_id" not in line and "span_id" not in line for line in startup)


def test_two_workers_each_configured_once() -> None:
    """--workers 2: every line JSON, each app line printed and exported exactly once."""
    port = free_port()
    args = app_command(port, "--workers", "2")
    with otlp_receiver() as receiver, running(args, app_env(receiver), port=port) as process:
        for _ in range(6):
            exercise(port)
        out, err = stop(process, timeout=30)
        assert receiver.wait_for(lambda r: len([x for x in r.logs if x.body == "order created"]) >= 12, 10)
    lines = parse_lines(out)
    assert "already instrumented" not in (out + err).lower()
    assert len([line for line in lines if line["message"].startswith("Started server process")]) == 2
    orders = [line for line in lines if line["message"] == "order created"]
    assert len(orders) == 12
    assert len({(line["trace_id"], line["span_id"]) for line in orders}) == 12
    assert len([r for r in receiver.logs if r.body == "order created"]) == 12


def test_sigterm_flushes_pending_records() -> None:
    """Records logged just before SIGTERM reach the receiver before the process exits."""
    port = free_port()
    with otlp_receiver() as receiver, running(app_command(port), app_env(receiver), port=port) as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.post("/orders", json=ORDER).status_code == 201
        stop(process, signal.SIGTERM)
        assert process.returncode == -signal.SIGTERM
        assert any(r.body == "order created" for r in receiver.logs)
        assert any(s.kind == 2 for s in receiver.spans)


def test_collector_down_one_line_and_quick_exit() -> None:
    """With nothing listening: requests work, exactly one failure line, SIGINT exit within the timeout."""
    port = free_port()
    # The exporter gives up on a dead endpoint after OTEL_EXPORTER_OTLP_TIMEOUT (default 10 s).
    env = app_env(None, LOGKIT_SHUTDOWN_TIMEOUT="3", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    with running(app_command(port), env, port=port) as process:
        output = OutputReader(process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(20):
                assert client.post("/orders", json=ORDER).status_code == 201
            output.wait_for("is failing", timeout=20)
            for _ in range(20):  # more traffic while it is down: no second line
                assert client.post("/orders", json=ORDER).status_code == 201
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(20)
        elapsed = time.monotonic() - started
        lines = parse_lines(output.finish())
        err = process.stderr.read() if process.stderr is not None else ""
    failing = [line for line in lines if "is failing" in line["message"]]
    assert 1 == len(failing)
    assert 40 == len([line for line in lines if line["message"] == "order created"])
    assert "Traceback" not in err
    assert elapsed < 3 + 2, elapsed  # LOGKIT_SHUTDOWN_TIMEOUT, plus the interpreter's own exit


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LOGKIT_LOG_FORMAT", "xml"), ("LOGKIT_ENV", "staging"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    ids=["format", "env", "protocol"],
)
def test_bad_variable_fails_fast_before_the_app(variable: str, value: str) -> None:
    """One line on stderr naming variable, value and accepted values; exit 2; the app never starts."""
    port = free_port()
    result = run_cli(app_command(port), app_env(None, **{variable: value}))
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"otel-logkit: {variable}={value!r} is invalid: expected ")


def test_bad_option_value_fails_fast_too() -> None:
    """A bad value given as an opentelemetry-instrument option is caught as well."""
    args = [str(BIN / "otel-logkit-instrument"), "--traces_exporter", "zipkin", str(BIN / "python"), "-c", "print(1)"]
    result = run_cli(args, base_env())
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER='zipkin' is invalid" in result.stderr
    assert "" == result.stdout


def test_plain_opentelemetry_instrument_also_fails_fast() -> None:
    """With otel-logkit installed, plain opentelemetry-instrument stops on a bad variable too."""
    result = run_cli(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", "print('app')"],
        base_env(LOGKIT_LOG_LEVEL="LOUD"),
    )
    assert result.returncode == 2
    assert "LOGKIT_LOG_LEVEL='LOUD' is invalid" in result.stderr
    assert "app" not in result.stdout


def test_plain_opentelemetry_instrument_gives_json_lines() -> None:
    """Plain opentelemetry-instrument with otel-logkit installed produces the same JSON lines."""
    code = "import logging, structlog; structlog.get_logger('a').info('hi', x=1); logging.getLogger('b').warning('yo')"
    result = run_cli(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", code],
        base_env(OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none", OTEL_SERVICE_NAME="cli"),
    )
    assert result.returncode == 0, result.stderr
    lines = parse_lines(result.stdout)
    assert [(line["logger"], line["message"]) for line in lines] == [("a", "hi"), ("b", "yo")]
    assert all(line["service"] == "cli" for line in lines)


def test_command_not_found() -> None:
    """An unknown command is reported by name with exit status 127."""
    result = run_cli([str(BIN / "otel-logkit-instrument"), "no-such-command-xyz"], base_env())
    assert result.returncode == 127
    assert "no-such-command-xyz" in result.stderr


def test_reload_child_is_configured_once_per_restart(tmp_path: Any) -> None:
    """--reload: the server child, restarted after a change, prints each line once, as JSON."""
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "trigger.py").write_text("VERSION = 1\n")
    port = free_port()
    args = app_command(port, "--reload", "--reload-dir", str(watched))
    with otlp_receiver() as receiver, running(args, app_env(receiver), port=port) as process:
        output = OutputReader(process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert 201 == client.post("/orders", json=ORDER).status_code
            output.wait_for("Started server process", timeout=10)
            (watched / "trigger.py").write_text("VERSION = 2\n")
            output.wait_for("Started server process", count=2, timeout=30)  # the restarted child is up
            assert 201 == client.post("/orders", json=ORDER).status_code
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        lines = parse_lines(output.finish())
    assert 2 == len([line for line in lines if line["message"].startswith("Started server process")])
    orders = [line for line in lines if line["message"] == "order created"]
    assert len(orders) == len({(line["trace_id"], line["span_id"]) for line in orders})
    assert len(orders) >= 2


def test_secrets_in_query_strings_never_leave_the_process() -> None:
    """A secret in the URL is masked on stdout and in every exported span and record."""
    secret = "sk_live_51Habc123secretvalue"
    port = free_port()
    with otlp_receiver() as receiver, running(app_command(port), app_env(receiver), port=port) as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert 200 == client.get(f"/products?api_key={secret}&page=2").status_code
        out, _ = stop(process)
        assert receiver.wait_for(lambda r: any(s.name == "GET /products" for s in r.spans))
    assert secret not in out
    assert all(secret.encode() not in raw for raw in receiver.raw)
    server = next(s for s in receiver.spans if s.name == "GET /products")
    assert "page=2" in str(server.attributes)


_DRAINING_APP = """
import signal, sys, time
import structlog
from opentelemetry import trace
import otel_logkit

def drain(signum, frame):
    with trace.get_tracer("app").start_as_current_span("drain"):
        structlog.get_logger("app").warning("draining")
    sys.exit(0)

signal.signal(signal.SIGTERM, drain)
otel_logkit.configure()
sys.stderr.write("ready\\n")
sys.stderr.flush()
time.sleep(30)
"""


def test_sigterm_runs_the_apps_own_handler_before_the_flush() -> None:
    """The app's SIGTERM handler runs first; what it logs and traces while draining is exported."""
    with otlp_receiver() as receiver:
        process = subprocess.Popen(
            [str(BIN / "python"), "-c", _DRAINING_APP],
            cwd=ROOT,
            env=app_env(receiver),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stderr is not None
            assert "ready" in process.stderr.readline()
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=20)
        finally:
            process.kill()
        assert 0 == process.returncode
        assert ["draining"] == [line["message"] for line in parse_lines(stdout)]
        assert any(r.body == "draining" for r in receiver.logs)
        assert any(s.name == "drain" for s in receiver.spans)


_USER_TEST_RUN = """
import os, sys
import pytest  # a user's test run: pytest imported, PYTEST_CURRENT_TEST set
os.environ["PYTEST_CURRENT_TEST"] = "test_app.py::test_x (call)"
import structlog
import otel_logkit
otel_logkit.configure()
from otel_logkit.logs import processors
def broken(*args, **kwargs):
    raise RuntimeError("otel-logkit bug")
processors.TimeStamper.__call__ = broken  # the chain now fails on every line
structlog.get_logger("app").info("still written")
sys.stderr.write("returned normally\\n")
"""


def test_failures_stay_contained_in_a_users_pytest_run() -> None:
    """Under the user's own pytest, otel-logkit's failures are contained, never re-raised into the app."""
    env = base_env(OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    result = subprocess.run(
        [str(BIN / "python"), "-c", _USER_TEST_RUN],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert "returned normally" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(line["message"] == "still written" and "logkit_error" in line for line in lines)
