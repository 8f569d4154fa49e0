"""FastAPI's own OpenTelemetry instrumentation, used where the installed FastAPI ships it.

FastAPI releases with a ``fastapi.telemetry`` package start the HTTP server span themselves,
with the stable semantic conventions, whenever an SDK tracer provider is set. That span costs
far less per request than the contrib ASGI middleware's (one span whose attributes are set in
two calls, no second route match, no per-message wrappers), so on those releases otel-logkit
sets the framework's options and does not apply ``opentelemetry-instrumentation-fastapi``;
older releases keep the contrib instrumentation. FastAPI itself steps aside when an app's stack
already holds the contrib middleware (``FastAPIInstrumentor.instrument_app`` in the app's code),
so a request never gets two server spans.

Options set, each overridden by the app's own ``FastAPI(telemetry={...})``:

- ``operation_spans``: off. One span per request, like the contrib path without its internal
  send/receive spans; the access line and the server span carry what a request did.
- ``logs``: off. otel-logkit writes and exports the unhandled-exception line itself; FastAPI's
  own records would repeat it wherever a global ``LoggerProvider`` is set.
- ``exclude``: requests whose URL matches ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` or
  ``OTEL_PYTHON_EXCLUDED_URLS`` (the contrib instrumentation's variables) get no span.
- ``tracing``: off when ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` names ``fastapi`` (the caller
  reads that variable).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry.util.http import ExcludeList, parse_excluded_urls

if TYPE_CHECKING:
    from otel_logkit.config import Settings

OPERATION_SPANS = False
"""FastAPI's per-request dependency, endpoint and serialization spans (default: off)."""


def available() -> bool:
    """Whether the installed FastAPI has its own telemetry; FastAPI is not imported to find out."""
    try:
        spec = importlib.util.find_spec("fastapi")
    except (ImportError, ValueError):
        return False
    locations = spec.submodule_search_locations if spec is not None else None
    return any(os.path.isfile(os.path.join(location, "telemetry", "_asgi.py")) for location in locations or ())


class ExcludedRequests:
    """The ``exclude`` option: True for a request whose path or URL an exclusion pattern matches.

    Args:
        patterns: the contrib instrumentation's exclusion list.
    """

    def __init__(self, patterns: ExcludeList) -> None:
        self._patterns = patterns

    def __call__(self, scope: MutableMapping[str, Any]) -> bool:
        """Decide for one ASGI scope (never raises: a bad scope is simply not excluded)."""
        try:
            path = scope.get("path") or ""
            if self._patterns.url_disabled(path):
                return True
            scheme = scope.get("scheme") or "http"
            server = scope.get("server") or ("", None)
            host = f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
            query = (scope.get("query_string") or b"").decode("latin-1")
            url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
            return bool(self._patterns.url_disabled(url))
        except Exception:  # noqa: BLE001 - telemetry must not reach the app
            return False


def telemetry_defaults(settings: Settings, *, tracing: bool = True) -> dict[str, Any]:
    """The ``FastAPI(telemetry=...)`` options otel-logkit sets (the app's own ones win).

    Args:
        settings: the span exclusions (``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``, else
            ``OTEL_PYTHON_EXCLUDED_URLS``, as the contrib instrumentation reads them).
        tracing: ``False`` when the FastAPI instrumentation is disabled.
    """
    defaults: dict[str, Any] = {"operation_spans": OPERATION_SPANS, "logs": False}
    if not tracing:
        defaults["tracing"] = False
    if settings.fastapi_span_excluded_urls:
        defaults["exclude"] = ExcludedRequests(parse_excluded_urls(settings.fastapi_span_excluded_urls))
    return defaults
