"""Entry points for the official auto-instrumentation runner (``opentelemetry-instrument``).

``otel-logkit-instrument`` selects these explicitly; plain ``opentelemetry-instrument`` finds them
through the ``opentelemetry_distro`` and ``opentelemetry_configurator`` entry points. Both run
the functions of :mod:`otel_logkit._autoinit`, which ``otel-logkit-instrument``'s own sitecustomize
calls directly.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_logkit import _autoinit


class LogkitDistro(BaseDistro):  # type: ignore[misc]
    """Sets OpenTelemetry defaults with ``setdefault`` (user settings win) and skips the
    instrumentations that otel-logkit's configurator already applied with its own options."""

    def _configure(self, **kwargs: Any) -> None:
        _autoinit.set_defaults()

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        """Instrument one library, unless otel-logkit already did (no "already instrumented" noise)."""
        _autoinit.load_instrumentor(entry_point, **kwargs)


class LogkitConfigurator(_BaseConfigurator):
    """Runs :func:`otel_logkit.setup.configure` from the environment.

    The official runner logs and swallows ordinary exceptions raised here and would start the
    app uninstrumented; an invalid variable instead stops the process with exit code 2 and one
    line on stderr, exactly as ``otel-logkit-instrument`` does before handing over.
    """

    def _configure(self, **kwargs: Any) -> None:
        _autoinit.configure_or_exit()
