"""Span and log attribute keys that OpenTelemetry's semantic conventions do not define.

One flat module of constants, so that no key is ever spelled inline twice.
"""

from __future__ import annotations

REQUEST_ID = "otel_logkit.request_id"
"""The request id (``LOGKIT_REQUEST_ID_HEADER``), set on the server span of every request."""
