"""Command-line entry points: ``otel-logkit-instrument`` and ``otel-logkit doctor``.

Imports are local to the command that needs them: ``otel-logkit-instrument`` is on the path to
an app's first answered request.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otel_logkit import environment_variables as ev

if TYPE_CHECKING:
    from otel_logkit.config import Settings


def instrument_main() -> None:
    """``otel-logkit-instrument [opentelemetry-instrument options] COMMAND [ARGS...]``.

    Validates the configuration (including values given as options) before handing over, then
    execs COMMAND with otel-logkit's distro and configurator selected and otel-logkit's
    sitecustomize first on ``PYTHONPATH``. Without options it execs COMMAND itself, as the official
    runner would (the runner's argument parser loads every OpenTelemetry variable module); with
    options, ``--help`` or ``--version`` the official runner parses them.
    """
    os.environ.setdefault("OTEL_PYTHON_DISTRO", "otel_logkit")
    os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "otel_logkit")
    arguments = sys.argv[1:]
    if not arguments or arguments[0].startswith("-"):
        _run_official()
        return
    _exec(arguments[0], arguments[1:])


def _run_official() -> None:
    from opentelemetry.instrumentation import auto_instrumentation

    official_dir = os.path.dirname(os.path.abspath(auto_instrumentation.__file__))
    requested: list[str] = []

    def find(command: str) -> str | None:
        requested.append(command)
        return which(command)

    def checked_execl(executable: str | None, *args: str) -> None:
        # The runner has set the options' variables and put its own directory on PYTHONPATH.
        python_path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p != official_dir]
        os.environ["PYTHONPATH"] = os.pathsep.join(python_path)
        _exec(requested[-1] if requested else "", args[1:], executable)

    auto_instrumentation.which = find  # type: ignore[attr-defined,assignment]
    auto_instrumentation.execl = checked_execl  # type: ignore[attr-defined,assignment]
    auto_instrumentation.run()


def _exec(command: str, args: Sequence[str], executable: str | None = None) -> None:
    """Validate, find ``command``, put otel-logkit's sitecustomize first on PYTHONPATH, exec."""
    _validate_or_exit()
    executable = executable or which(command)
    if executable is None:
        sys.stderr.write(f"otel-logkit-instrument: command not found: {command}\n")
        raise SystemExit(127)
    os.environ["PYTHONPATH"] = bootstrap_python_path(os.environ.get("PYTHONPATH"), os.getcwd())
    os.execl(executable, executable, *args)  # noqa: S606 - running the user's command is the point


def bootstrap_python_path(python_path: str | None, cwd: str) -> str:
    """``PYTHONPATH`` for the command, built as the official runner builds it.

    The current directory is added when absent (apps run from their own executable import from
    it), and otel-logkit's sitecustomize directory goes first.
    """
    from otel_logkit._autoinit import BOOTSTRAP_DIR

    parts = python_path.split(os.pathsep) if python_path else []
    if cwd not in parts:
        parts.insert(0, cwd)
    return os.pathsep.join([BOOTSTRAP_DIR, *(p for p in parts if p != BOOTSTRAP_DIR)])


def _validate_or_exit() -> Settings:
    from otel_logkit.config import Settings
    from otel_logkit.exceptions import ConfigError

    try:
        return Settings.from_env()
    except ConfigError as error:
        sys.stderr.write(f"otel-logkit: {error}\n")
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    """``otel-logkit doctor``: print the effective configuration and check the OTLP endpoint."""
    import argparse

    parser = argparse.ArgumentParser(prog="otel-logkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", help="print the effective configuration and check the OTLP endpoint")
    doctor.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the endpoint")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor_main(args.timeout)
    return 2  # pragma: no cover - argparse rejects other commands


def mask(name: str, value: str) -> str:
    """Mask secrets in a variable's value: header values, credentials in URLs, secret-named vars."""
    if name.endswith("_HEADERS"):
        pairs = []
        for pair in value.split(","):
            key, sep, _ = pair.partition("=")
            pairs.append(f"{key.strip()}=****" if sep else "****")
        return ",".join(pairs)
    from otel_logkit.redact.keys import KeyKind, classify_key

    if classify_key(name) not in (KeyKind.NORMAL, KeyKind.SAFE):
        return "****"  # the redactor's own key rules: *_PASSWORD, *_API_KEY, *_TOKEN, ...
    parsed = urllib.parse.urlsplit(value)
    if parsed.password or parsed.username:
        host = parsed.hostname or ""
        port = f":{parsed.port}" if parsed.port else ""
        return urllib.parse.urlunsplit(parsed._replace(netloc=f"****@{host}{port}"))
    return value


def doctor_main(timeout: float = 3.0, environ: dict[str, str] | None = None) -> int:
    """Print configuration and endpoint health; return 0 only when healthy."""
    from otel_logkit.config import Settings
    from otel_logkit.exceptions import ConfigError

    environ = dict(os.environ) if environ is None else environ
    try:
        settings = Settings.from_env(environ)
    except ConfigError as error:
        print(f"configuration: INVALID: {error}")
        return 2
    print("otel-logkit configuration")
    effective = _effective(settings)
    for name in ev.ALL:
        shown = mask(name, environ[name]) if name in environ else f"(default) {effective.get(name, '')}"
        print(f"  {name}={shown}")
    for name in sorted(environ):
        if name.startswith("OTEL_"):
            print(f"  {name}={mask(name, environ[name])}")
    print(f"  service={settings.service} env={settings.env} level={settings.log_level_name}")
    print(f"  logs exporter={settings.logs_exporter} traces exporter={settings.traces_exporter}")
    if settings.sdk_disabled or (settings.logs_exporter != "otlp" and settings.traces_exporter != "otlp"):
        print("export: disabled (OTLP not in use), nothing to check")
        return 0
    ok, detail = check_endpoint(settings, _headers(environ), timeout)
    print(f"endpoint: {'OK' if ok else 'FAILED'}: {detail}")
    return 0 if ok else 1


def _effective(settings: Settings) -> dict[str, Any]:
    return {
        ev.LOGKIT_ENV: settings.env,
        ev.LOGKIT_LOG_LEVEL: settings.log_level_name,
        ev.LOGKIT_LOG_FORMAT: settings.log_format,
        ev.LOGKIT_REQUEST_ID_HEADER: settings.request_id_header,
        ev.LOGKIT_GATEWAYS: ";".join(f"{r.kind}={','.join(r.hosts)}" for r in settings.gateways) or "none",
        ev.LOGKIT_REDACT_KEYS: ",".join(sorted(settings.redact_keys)) or "none",
        ev.LOGKIT_BODY_SUMMARY_MAX: settings.body_summary_max,
        ev.LOGKIT_TRUSTED_PROXIES: ",".join(str(n) for n in settings.trusted_proxies) or "none",
        ev.LOGKIT_EXCLUDED_URLS: ",".join(settings.excluded_urls) or "none",
        ev.LOGKIT_EXPORT_QUEUE_SIZE: settings.export_queue_size,
        ev.LOGKIT_SHUTDOWN_TIMEOUT: settings.shutdown_timeout,
        ev.LOGKIT_EXPORT_PROCESS: "true" if settings.export_process else "false",
        ev.LOGKIT_GC_FREEZE: "true" if settings.gc_freeze else "false",
        ev.LOGKIT_SQL_COMMENTER: "true" if settings.sql_commenter else "false",
    }


def _headers(environ: dict[str, str]) -> dict[str, str]:
    """The OTLP headers the logs exporter would send (the SDK's own parser)."""
    from opentelemetry.util.re import parse_env_headers

    headers: dict[str, str] = {}
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS"):
        headers.update(parse_env_headers(environ.get(variable, ""), liberal=True))
    return headers


def check_endpoint(settings: Settings, headers: dict[str, str], timeout: float) -> tuple[bool, str]:
    """Send an empty OTLP logs request (HTTP) or open a connection (gRPC) to the endpoint."""
    import socket
    import urllib.error
    import urllib.request

    shown = mask("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", settings.otlp_logs_endpoint)
    if settings.otlp_protocol == "grpc":
        parsed = urllib.parse.urlsplit(settings.otlp_logs_endpoint)
        address = (parsed.hostname or "localhost", parsed.port or 4317)
        try:
            with socket.create_connection(address, timeout=timeout):
                return True, f"{shown} accepts connections (gRPC)"
        except OSError as error:
            return False, f"{shown} does not answer: {error}"
    request = urllib.request.Request(  # noqa: S310 - the URL is the validated OTLP endpoint
        settings.otlp_logs_endpoint,
        data=b"",
        method="POST",
        headers={"Content-Type": "application/x-protobuf", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return True, f"{shown} answered {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"{shown} answered {error.code} {error.reason}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return False, f"{shown} does not answer: {reason}"


def which(command: str) -> str | None:
    """Locate ``command`` on PATH, then beside this Python (a virtualenv that is not activated)."""
    return shutil.which(command) or shutil.which(command, path=os.path.dirname(sys.executable))
