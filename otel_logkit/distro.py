"""Entry points for the official auto-instrumentation runner (``opentelemetry-instrument``).

``otel-logkit-instrument`` selects these explicitly; plain ``opentelemetry-instrument`` finds them
through the ``opentelemetry_distro`` and ``opentelemetry_configurator`` entry points.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_logkit.exceptions import ConfigError


class LogkitDistro(BaseDistro):  # type: ignore[misc]
    """Sets OpenTelemetry defaults with ``setdefault`` (user settings win) and skips the
    instrumentations that otel-logkit's configurator already applied with its own options."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Instrument one library, unless otel-logkit already did (no "already instrumented" noise)."""
        from otel_logkit.setup import HANDLED_INSTRUMENTATIONS, is_configured

        if entry_point.name in HANDLED_INSTRUMENTATIONS and is_configured():
            return
        instrumentor = entry_point.load()()
        if instrumentor.is_instrumented_by_opentelemetry:
            return
        instrumentor.instrument(**kwargs)


class LogkitConfigurator(_BaseConfigurator):
    """Runs :func:`otel_logkit.setup.configure` from the environment.

    The official runner logs and swallows ordinary exceptions raised here and would start the
    app uninstrumented; an invalid variable instead stops the process with exit code 2 and one
    line on stderr, exactly as ``otel-logkit-instrument`` does before handing over.
    """

    def _configure(self, **kwargs: Any) -> None:
        from otel_logkit.setup import configure

        try:
            configure()
        except ConfigError as error:
            fail_config(error)


def fail_config(error: ConfigError) -> None:
    """Write ``otel-logkit: <error>`` on stderr and exit with code 2 at once."""
    try:
        sys.stderr.write(f"otel-logkit: {error}\n")
        sys.stderr.flush()
    finally:
        os._exit(2)
