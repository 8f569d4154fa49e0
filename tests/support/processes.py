"""Start and stop app processes on 127.0.0.1 for integration tests, always bounded in time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers (any status), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def base_env(**extra: str) -> dict[str, str]:
    """The environment for a child: this one minus OTEL_/LOGKIT_ variables (but the export path
    switch), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOGKIT_", "PYTEST_"))}
    if "LOGKIT_EXPORT_PROCESS" in os.environ:
        # The export path under test (`make test-inprocess`, `make e2e-inprocess`): kept for children.
        env["LOGKIT_EXPORT_PROCESS"] = os.environ["LOGKIT_EXPORT_PROCESS"]
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@contextmanager
def running(
    args: list[str],
    env: Mapping[str, str],
    *,
    port: int | None = None,
    cwd: Path = ROOT,
    lifetime: float = 90.0,
) -> Iterator[subprocess.Popen[str]]:
    """Start ``args``; wait for 127.0.0.1:``port``; on exit SIGTERM, then SIGKILL after 15 s."""
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        if port is not None:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(max(1.0, min(15.0, lifetime - (time.monotonic() - started))))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 20.0) -> tuple[str, str]:
    """Send ``sig`` to the process (the server, not its group) and collect its output."""
    process.send_signal(sig)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=5)
    return out, err


class OutputReader:
    """Reads a child's stdout line by line in a thread, so a test can wait for a line (bounded)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="test-output-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in iter(self._stream.readline, ""):
            with self._lock:
                self._lines.append(line)

    def text(self) -> str:
        """Everything read so far."""
        with self._lock:
            return "".join(self._lines)

    def wait_for(self, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``needle`` occurs in ``count`` lines; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = sum(needle in line for line in self._lines)
            if found >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} seen {found} times, not {count}, within {timeout} s")
            time.sleep(0.05)

    def finish(self, timeout: float = 10.0) -> str:
        """Wait for the end of the output (the child has exited) and return all of it."""
        self._thread.join(timeout)
        return self.text()
