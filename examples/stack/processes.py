"""Real nginx and PostgreSQL as local processes (``make stack``, the stack tests, the bench),
on free 127.0.0.1 ports, every wait bounded.

PostgreSQL refuses to run as root: as root, its data directory belongs to the ``postgres``
user (Debian's package creates it) and every PostgreSQL program runs through ``runuser``.
Both servers are stopped by pid (SIGTERM/fast shutdown, then SIGKILL) in the caller's finally.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STACK_DIR = Path(__file__).resolve().parent
NGINX_SNIPPET = STACK_DIR / "nginx" / "otel-logkit.conf"
NGINX_TEMPLATE = STACK_DIR / "nginx" / "nginx.conf.template"
POSTGRES_SETTINGS = STACK_DIR / "postgres" / "otel-logkit.conf"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(interval)


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` (Debian's layout), or PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def render(template: Path, **values: str) -> str:
    """``template`` with each ``@NAME@`` replaced by ``values[NAME]``."""
    text = template.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster writing its jsonlog slow-query log under ``log_dir``."""

    port: int = field(default_factory=free_port)
    min_duration_ms: int = 0
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="logkit-pg-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/shop"

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def start(self, timeout: float = 60.0) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL not found: apt-get install -y postgresql")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        os.chmod(self.base, 0o755)  # noqa: S103 - the postgres user must traverse it
        subprocess.run(
            self._as_owner(
                [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        # The stack's settings, then what this run needs (a port of its own, every statement logged).
        conf = self.data_dir / "postgresql.conf"
        settings = self.base / "otel-logkit.conf"
        shutil.copy(POSTGRES_SETTINGS, settings)
        os.chmod(settings, 0o644)
        with conf.open("a") as out:
            out.write(f"\ninclude '{settings}'\n")
        args = [
            str(bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.base}",
            "-c",
            f"log_min_duration_statement={self.min_duration_ms}",
            "-c",
            "log_file_mode=0644",
        ]
        self.process = subprocess.Popen(
            self._as_owner(args),
            stdout=subprocess.DEVNULL,
            stderr=(self.base / "postgres.stderr").open("wb"),
            start_new_session=True,
        )
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-Atq"]

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.base / 'postgres.stderr').read_text()}")
            return (
                subprocess.run([*psql, "-c", "select 1"], check=False, capture_output=True, timeout=10).returncode == 0
            )

        wait_until(ready, timeout, what="PostgreSQL accepting connections")
        subprocess.run([*psql, "-c", "create database shop"], check=True, capture_output=True, timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_entries(self) -> list[dict[str, Any]]:
        """Every jsonlog entry written so far."""
        entries: list[dict[str, Any]] = []
        for path in sorted(self.log_dir.glob("*.json")):
            for line in path.read_text(errors="replace").splitlines():
                if line.strip():
                    entries.append(json.loads(line))
        return entries


@dataclass
class Nginx:
    """nginx in front of ``upstream`` with the stack's snippet, its JSON access log in ``base``."""

    upstream: str
    base: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.base / "access.json"

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("nginx")
        if binary is None:
            raise RuntimeError("nginx not found on PATH: apt-get install -y nginx")
        self.base.mkdir(parents=True, exist_ok=True)
        conf = self.base / "nginx.conf"
        conf.write_text(
            render(
                NGINX_TEMPLATE,
                SNIPPET=str(NGINX_SNIPPET),
                SNIPPET_DIR=str(NGINX_SNIPPET.parent),
                LISTEN=f"127.0.0.1:{self.port}",
                UPSTREAM=self.upstream,
                PREFIX=str(self.base),
                USER="root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name,
            )
        )
        self.process = subprocess.Popen(
            [binary, "-p", str(self.base), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=(self.base / "nginx.stderr").open("wb"),
            start_new_session=True,
        )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.base / 'nginx.stderr').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
            return False

        wait_until(up, timeout, what="nginx listening")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGQUIT)  # graceful: finish requests, flush logs
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def access_lines(self) -> list[dict[str, Any]]:
        """Every JSON access-log line written so far."""
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]
