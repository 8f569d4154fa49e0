"""Span and log attribute keys that OpenTelemetry's semantic conventions do not define.

One flat module of constants, so that no key is ever spelled inline twice.
"""

from __future__ import annotations

REQUEST_ID = "otel_logkit.request_id"
"""The request id (``LOGKIT_REQUEST_ID_HEADER``), set on the server span of every request."""

GATEWAY_KIND = "otel_logkit.gateway.kind"
"""The ``LOGKIT_GATEWAYS`` kind of an outbound gateway call, e.g. ``payment`` or ``sms``."""

GATEWAY_OPERATION = "otel_logkit.gateway.operation"
"""What the gateway call does: ``POST /v1/charges`` for HTTP, the caller's name for SDK calls."""

GATEWAY_PARAMS = "otel_logkit.gateway.params"
"""Redacted, truncated summary of the call's parameters (query string and JSON or form body)."""

GATEWAY_STATUS_CODE = "otel_logkit.gateway.status_code"
"""The gateway's response status (HTTP status code), whatever the HTTP semconv mode."""

GATEWAY_ERROR_CODE = "otel_logkit.gateway.error_code"
"""Why a gateway call failed: ``http_<status>``, ``timeout``, ``connection_error`` or ``error``."""

GATEWAY_DURATION_MS = "otel_logkit.gateway.duration_ms"
"""Wall time of a failed or completed gateway call, in milliseconds."""

HOOK_ERROR = "otel_logkit.hook_error"
"""Set on a span when an otel-logkit hook failed on it (the exception type); the app is unaffected."""
