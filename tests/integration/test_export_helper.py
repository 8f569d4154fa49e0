"""The export helper's life, with real processes on 127.0.0.1 and a test OTLP receiver.

Spawned lazily per process (uvicorn ``--workers``, gunicorn ``--preload``, a plain fork), killed
and restarted (loss counted, app unaffected), the app SIGKILLed (what it handed over arrives),
a helper that stops reading (the app never blocks; drops counted and reported once).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.otlp_receiver import OTLPReceiver, otlp_receiver
from tests.support.processes import BIN, ROOT, OutputReader, base_env, free_port, running, stop

HELPER_MARK = "otel_logkit.export_helper"


def helpers() -> dict[int, int]:
    """Every export helper on this machine: pid -> parent pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if HELPER_MARK.encode() in cmdline:
            found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def helpers_of(pids: set[int]) -> dict[int, int]:
    """Helpers whose parent is one of ``pids``: pid -> parent pid."""
    return {pid: parent for pid, parent in helpers().items() if parent in pids}


def children(pid: int, marker: str) -> set[int]:
    """Direct children of ``pid`` whose command line holds ``marker``."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    found = set()
    try:
        pids = {int(part) for part in path.read_text().split()}
    except OSError:
        return found
    for child in pids:
        try:
            if marker.encode() in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except OSError:
            continue
    return found


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def env_for(receiver: OTLPReceiver | None, **extra: str) -> dict[str, str]:
    """OTLP toward the receiver (or a closed port), service ``helper-test``, INFO."""
    endpoint = receiver.endpoint if receiver is not None else f"http://127.0.0.1:{free_port()}"
    settings = {
        "OTEL_SERVICE_NAME": "helper-test",
        "LOGKIT_ENV": "test",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "PYTHONPATH": str(ROOT),
        "LOGKIT_EXPORT_PROCESS": "true",  # these tests are about the helper, on either test pass
    }
    return base_env(**{**settings, **extra})


def script(body: str) -> list[str]:
    """``python -c`` running otel-logkit configured from the environment, then ``body``."""
    prelude = textwrap.dedent(
        """
        import json, os, signal, sys, time
        import otel_logkit
        from otel_logkit import setup

        otel_logkit.configure(instrument=False)
        log = otel_logkit.get_logger("script")
        channel = setup.log_queue()

        def say(**fields):
            sys.stderr.write(json.dumps(fields) + "\\n")
            sys.stderr.flush()

        def handed_over(timeout=20.0):
            deadline = time.monotonic() + timeout
            while channel.waiting and time.monotonic() < deadline:
                time.sleep(0.02)
            return not channel.waiting
        """
    )
    return [sys.executable, "-c", prelude + textwrap.dedent(body)]


def signal_the_helper(process: subprocess.Popen[str], sig: int) -> int:
    """Read the helper's pid the script says on stderr, send it ``sig``, let the script go on."""
    assert process.stderr is not None
    assert process.stdin is not None
    helper = int(json.loads(process.stderr.readline())["helper"])
    os.kill(helper, sig)
    process.stdin.write("\n")
    process.stdin.flush()
    return helper


def messages(receiver: OTLPReceiver, prefix: str) -> list[str]:
    """Bodies of the received log records that start with ``prefix``."""
    return [str(r.body) for r in receiver.logs if str(r.body).startswith(prefix)]


def test_the_helper_is_spawned_lazily_and_gone_with_the_app() -> None:
    """No helper before the first record; one after, the app's child; none once the app exited."""
    with otlp_receiver() as receiver:
        command = script(
            """
            say(helper=channel.helper_pid, kind=type(channel).__name__)
            log.info("first record")
            assert handed_over()
            say(helper=channel.helper_pid)
            assert otel_logkit.force_flush(10)
            say(flushed=True)
            """
        )
        result = subprocess.run(command, env=env_for(receiver), capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        said = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        assert said[0] == {"helper": None, "kind": "HelperChannel"}
        helper = said[1]["helper"]
        assert isinstance(helper, int)
        assert said[2] == {"flushed": True}
        assert messages(receiver, "first record") == ["first record"]
        assert wait_until(lambda: not alive(helper), timeout=10)


def test_a_forked_child_gets_its_own_helper_and_the_parents_ends_with_the_parent() -> None:
    """After fork the child starts its own helper; the parent's helper sees the end of its pipe
    when the parent exits, although the child still runs."""
    with otlp_receiver() as receiver:
        command = script(
            """
            log.info("parent before fork")
            assert handed_over()
            parent_helper = channel.helper_pid
            child = os.fork()
            if child == 0:
                log.info("child record")
                assert handed_over()
                say(child_helper=channel.helper_pid, parent_helper=parent_helper)
                assert otel_logkit.force_flush(10)
                time.sleep(3)  # still alive while the parent exits
                os._exit(0)
            log.info("parent after fork")
            assert otel_logkit.force_flush(10)
            say(parent=os.getpid(), parent_helper=parent_helper)
            """
        )
        process = subprocess.Popen(
            command, env=env_for(receiver), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        said = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        child = next(s for s in said if "child_helper" in s)
        parent = next(s for s in said if "parent" in s)
        assert child["child_helper"] not in (None, parent["parent_helper"])
        # The parent exited; its helper ends although the child (holding no copy of the pipe) lives on.
        assert wait_until(lambda: not alive(parent["parent_helper"]), timeout=10)
        assert receiver.wait_for(lambda r: bool(messages(r, "child record")), timeout=10)
        assert messages(receiver, "parent before fork") == ["parent before fork"]
        assert messages(receiver, "parent after fork") == ["parent after fork"]
        assert wait_until(lambda: not alive(child["child_helper"]), timeout=15)


def test_records_handed_over_survive_a_sigkill_of_the_app() -> None:
    """SIGKILL right after the hand-off: the helper drains its pipe and sends every record."""
    with otlp_receiver() as receiver:
        command = script(
            """
            for index in range(500):
                log.info("before the kill", index=index)
            assert handed_over()
            say(handed=True, helper=channel.helper_pid)
            time.sleep(60)
            """
        )
        process = subprocess.Popen(command, env=env_for(receiver), stderr=subprocess.PIPE, text=True)
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            said = json.loads(line)
            assert said["handed"] is True
            process.kill()
            process.wait(10)
            assert receiver.wait_for(lambda r: len(messages(r, "before the kill")) == 500, timeout=20)
            assert wait_until(lambda: not alive(said["helper"]), timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)
    indexes = sorted(r.attributes["index"] for r in receiver.logs if r.body == "before the kill")
    assert indexes == list(range(500))


def test_a_killed_helper_is_restarted_its_loss_counted_and_the_app_unaffected() -> None:
    """The app logs on while its helper is SIGKILLed: a new helper, one WARNING with the loss, no error."""
    with otlp_receiver() as receiver:
        command = script(
            """
            log.info("before the kill")
            assert otel_logkit.force_flush(10)
            first = channel.helper_pid
            say(helper=first)
            sys.stdin.readline()  # the test kills the helper meanwhile
            deadline = time.monotonic() + 20
            index = 0
            while time.monotonic() < deadline and channel.helper_pid in (None, first):
                log.info("while restarting", index=index)
                index += 1
                time.sleep(0.005)
            log.info("after the restart")
            assert otel_logkit.force_flush(10)
            say(helper=channel.helper_pid, restarts=channel.restarts, dropped=channel.dropped_total, logged=index)
            """
        )
        process = subprocess.Popen(
            command,
            env=env_for(receiver),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            first = signal_the_helper(process, signal.SIGKILL)
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    said = [json.loads(line) for line in err.splitlines() if line.startswith("{")][-1]
    assert said["helper"] not in (None, first)
    assert said["restarts"] == 1
    lines = [json.loads(line) for line in out.splitlines()]
    exited = [line for line in lines if line["message"].startswith("otel-logkit export helper exited")]
    assert len(exited) == 1
    assert exited[0]["level"] == "WARNING"
    assert exited[0]["exit_code"] == -signal.SIGKILL
    # What the dead helper had not settled is counted as lost; the rest went to the new one.
    arrived = len(messages(receiver, "while restarting"))
    assert arrived + exited[0]["lost_records"] >= said["logged"] >= exited[0]["lost_records"]
    assert said["dropped"] == exited[0]["lost_records"]
    assert "Traceback" not in err
    assert messages(receiver, "after the restart") == ["after the restart"]
    assert messages(receiver, "before the kill") == ["before the kill"]


def test_a_helper_that_stops_reading_never_blocks_the_app() -> None:
    """The helper stopped (SIGSTOP): every log call still returns at once, the pipe and the
    buffers fill, records are dropped from the export, counted, and reported once."""
    command = script(
        """
        log.info("warm up")
        assert handed_over()
        say(helper=channel.helper_pid)
        sys.stdin.readline()  # the test stops the helper meanwhile
        slowest = 0.0
        for index in range(20_000):
            payload = f"{index:06d}" + "x" * 2000  # distinct strings: nothing shared in the frames
            started = time.perf_counter()
            log.info("flood", index=index, payload=payload)
            slowest = max(slowest, time.perf_counter() - started)
        time.sleep(0.5)  # a few hand-off rounds against the full pipe
        say(slowest=slowest, dropped=channel.dropped_total)
        """
    )
    env = env_for(None, LOGKIT_EXPORT_QUEUE_SIZE="5000", LOGKIT_SHUTDOWN_TIMEOUT="1")
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    helper = None
    try:
        helper = signal_the_helper(process, signal.SIGSTOP)
        assert process.stderr is not None
        reader = OutputReader(process)  # stdout: 20,000 lines of 2 kB must not fill its pipe
        said = json.loads(process.stderr.readline())
        os.kill(helper, signal.SIGCONT)  # it holds the app's stdout: let it run to its end
        helper = None
        process.wait(60)
        out = reader.finish()
        err = process.stderr.read()
    finally:
        if helper is not None:
            os.kill(helper, signal.SIGCONT)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    # Bounded time per call, not a benchmark: a blocked write would take the whole run.
    assert said["slowest"] < 1.0, said
    assert said["dropped"] > 0
    floods = [line for line in out.splitlines() if '"flood"' in line]
    assert len(floods) == 20_000  # stdout has every line
    reports = [json.loads(line) for line in out.splitlines() if "export helper is not keeping up" in line]
    # One line for the whole flood (well inside one report interval), one summary at exit.
    assert len(reports) == 2, reports
    assert sum(report["dropped"] for report in reports) >= said["dropped"]


def test_uvicorn_workers_each_get_a_helper() -> None:
    """``uvicorn --workers 2``: the supervisor and each worker hand over to helpers of their own."""
    port = free_port()
    command = [str(BIN / "otel-logkit-instrument"), "uvicorn", "examples.shop.main:app", "--port", str(port)]
    with otlp_receiver() as receiver, running([*command, "--workers", "2"], env_for(receiver), port=port) as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(40):
                assert client.get("/products").status_code == 200
        workers = children(process.pid, "spawn_main")
        assert len(workers) == 2
        assert wait_until(lambda: set(helpers_of(workers).values()) == workers, timeout=20)
        everyone = {process.pid, *workers}
        spawned = helpers_of(everyone)
        assert receiver.wait_for(lambda r: sum(1 for s in r.spans if s.kind == 2) >= 40, timeout=20)
        stop(process, signal.SIGTERM)
    assert wait_until(lambda: not any(alive(pid) for pid in spawned), timeout=15)


@pytest.mark.skipif(sys.platform != "linux", reason="gunicorn's fork model, Linux")
def test_gunicorn_preload_workers_each_get_a_helper(tmp_path: Path) -> None:
    """``gunicorn --preload -w 2``: workers forked from a configured master start their own helpers;
    none of them uses the master's pipe."""
    (tmp_path / "wsgi_app.py").write_text(
        textwrap.dedent(
            """
            import flask
            import otel_logkit

            app = flask.Flask(__name__)
            log = otel_logkit.get_logger("wsgi")

            @app.get("/health")
            def health():
                return "ok"

            @app.get("/work")
            def work():
                log.info("work done")
                return "done"
            """
        )
    )
    port = free_port()
    command = [
        str(BIN / "otel-logkit-instrument"),
        str(BIN / "gunicorn"),
        "--preload",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "wsgi_app:app",
    ]
    with otlp_receiver() as receiver:
        env = env_for(receiver, PYTHONPATH=f"{tmp_path}:{ROOT}")
        with running(command, env, port=port, cwd=tmp_path) as process:
            output = OutputReader(process)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for _ in range(40):
                    assert client.get("/work").status_code == 200
            workers = children(process.pid, "gunicorn")
            assert len(workers) == 2
            assert wait_until(lambda: len(helpers_of(workers)) >= 1, timeout=20)
            spawned = helpers_of({process.pid, *workers})
            assert receiver.wait_for(lambda r: len(messages(r, "work done")) == 40, timeout=20)
            stop(process, signal.SIGTERM)
            output.finish()
        assert wait_until(lambda: not any(alive(pid) for pid in spawned), timeout=15)


def test_a_burst_of_spans_past_the_helpers_queue_is_counted_and_reported_once() -> None:
    """A collector that never answers, 3,000 spans against a queue of 200: the excess is dropped,
    counted, reported in one line (and a summary at exit) — never one line per span."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # accepts connections into the backlog, never answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        command = script(
            """
            from opentelemetry import trace
            tracer = trace.get_tracer("burst")
            for index in range(3000):
                with tracer.start_as_current_span("work", attributes={"index": index}):
                    pass
            assert handed_over()
            time.sleep(1.0)  # the helper reads the burst
            """
        )
        env = env_for(
            None,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_BSP_MAX_QUEUE_SIZE="200",
            OTEL_EXPORTER_OTLP_TIMEOUT="1",
            LOGKIT_SHUTDOWN_TIMEOUT="1",
        )
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    reports = [line for line in lines if line["message"] == "spans dropped from the OTLP export: queue full"]
    assert 1 <= len(reports) <= 2, reports
    assert sum(report["dropped"] for report in reports) >= 3000 - 200 - 512
    assert not [line for line in lines if "Queue full, dropping" in line["message"]]


def test_detectors_the_app_registers_redact_its_spans_before_they_leave() -> None:
    """A detector is the app's own code, which the helper never imports: spans are redacted in
    the app too, so that the account number never reaches the helper nor the collector."""
    body = textwrap.dedent(
        """
        import otel_logkit
        from opentelemetry import trace

        otel_logkit.register_detector("account", r"ACCT-[0-9]{6}", triggers=("ACCT-",))
        otel_logkit.configure(instrument=False)
        with trace.get_tracer("app").start_as_current_span("transfer", attributes={"note": "to ACCT-123456"}):
            otel_logkit.get_logger("app").info("transfer", note="to ACCT-654321")
        assert otel_logkit.force_flush(10)
        """
    )
    with otlp_receiver() as receiver:
        result = subprocess.run(
            [sys.executable, "-c", body], env=env_for(receiver), capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        spans = [span for span in receiver.spans if span.name == "transfer"]
        logs = [log for log in receiver.logs if log.body == "transfer"]
    assert len(spans) == 1
    assert len(logs) == 1
    assert "ACCT-123456" not in str(spans[0].attributes)
    assert "ACCT-654321" not in str(logs[0].attributes)
    assert "ACCT-654321" not in result.stdout
