"""``otel-logkit doctor``: effective configuration, masked secrets, endpoint check and exit code."""

from __future__ import annotations

import subprocess

from tests.support.otlp_receiver import otlp_receiver
from tests.support.processes import BIN, ROOT, base_env, free_port


def doctor(**env: str) -> subprocess.CompletedProcess[str]:
    """Run the doctor with ``env`` and return its result."""
    return subprocess.run(
        [str(BIN / "otel-logkit"), "doctor", "--timeout", "2"],
        cwd=ROOT,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthy_endpoint_exits_zero_and_masks_headers() -> None:
    """A reachable receiver: exit 0; header values are masked, names kept."""
    with otlp_receiver() as receiver:
        result = doctor(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer s3cr3t-t0ken,x-team=a",
            LOGKIT_ENV="prod",
        )
    assert 0 == result.returncode, result.stdout
    assert "s3cr3t" not in result.stdout
    assert "OTEL_EXPORTER_OTLP_HEADERS=Authorization=****,x-team=****" in result.stdout
    assert "LOGKIT_ENV=prod" in result.stdout
    assert "LOGKIT_LOG_LEVEL=(default) WARNING" in result.stdout
    assert "endpoint: OK" in result.stdout


def test_unreachable_endpoint_exits_non_zero_with_reason() -> None:
    """Nothing listening: exit 1 and the reason."""
    result = doctor(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    assert 1 == result.returncode
    assert "endpoint: FAILED" in result.stdout
    assert "does not answer" in result.stdout


def test_invalid_configuration_exits_two() -> None:
    """A bad variable is reported with exit code 2."""
    result = doctor(LOGKIT_LOG_FORMAT="xml")
    assert 2 == result.returncode
    assert "LOGKIT_LOG_FORMAT='xml' is invalid" in result.stdout


def test_credentials_in_endpoint_url_are_masked() -> None:
    """user:password@ in an endpoint URL never appears."""
    port = free_port()
    result = doctor(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://user:hunter2@127.0.0.1:{port}")
    assert "hunter2" not in result.stdout
    assert 1 == result.returncode


def test_export_disabled_is_healthy() -> None:
    """With both exporters off there is nothing to check: exit 0."""
    result = doctor(OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    assert 0 == result.returncode
    assert "export: disabled" in result.stdout
