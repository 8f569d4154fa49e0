"""The ``LOGKIT_*`` environment variables: one constant each, its value its own name.

Settings, ``otel-logkit doctor`` and the README table are all driven from this module
(a unit test keeps the README table in sync).
"""

from __future__ import annotations

LOGKIT_ENV = "LOGKIT_ENV"
"""Deployment environment: ``dev``, ``test`` or ``prod`` (default ``dev``). Sets the default
log level and the resource attribute ``deployment.environment.name``."""

LOGKIT_LOG_LEVEL = "LOGKIT_LOG_LEVEL"
"""Minimum level for stdout and export: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``, ``CRITICAL``.
Default by environment: dev ``DEBUG``, test ``INFO``, prod ``WARNING``."""

LOGKIT_LOG_FORMAT = "LOGKIT_LOG_FORMAT"
"""stdout rendering: ``json`` (one object per line, default) or ``console`` (coloured, for humans)."""

LOGKIT_REQUEST_ID_HEADER = "LOGKIT_REQUEST_ID_HEADER"
"""HTTP header carrying the request id, honoured on requests, echoed on responses and sent on
outbound calls (default ``X-Request-ID``)."""

LOGKIT_GATEWAYS = "LOGKIT_GATEWAYS"
"""Outbound gateways whose calls get named spans and sanitized summaries:
``kind=host[,host...][;kind=host...]``, a host may start with ``*.`` (default: none)."""

LOGKIT_REDACT_KEYS = "LOGKIT_REDACT_KEYS"
"""Extra key names to redact, comma-separated, case-insensitive (default: none)."""

LOGKIT_BODY_SUMMARY_MAX = "LOGKIT_BODY_SUMMARY_MAX"
"""Bytes kept in a body or parameter summary (default ``512``)."""

LOGKIT_TRUSTED_PROXIES = "LOGKIT_TRUSTED_PROXIES"
"""Comma-separated CIDRs of reverse proxies whose ``X-Forwarded-For`` is believed when deriving
``client_ip`` (default: none, the socket peer is the client)."""

LOGKIT_EXCLUDED_URLS = "LOGKIT_EXCLUDED_URLS"
"""Comma-separated path regexes with no access line (e.g. health checks); falls back to
``OTEL_PYTHON_EXCLUDED_URLS`` (default: none)."""

LOGKIT_EXPORT_QUEUE_SIZE = "LOGKIT_EXPORT_QUEUE_SIZE"
"""Log records held for OTLP export before new ones are dropped from the export (never from
stdout) and counted (default ``20000``)."""

LOGKIT_SHUTDOWN_TIMEOUT = "LOGKIT_SHUTDOWN_TIMEOUT"
"""Seconds a process spends flushing logs and spans on SIGTERM, SIGINT or exit (default ``5``)."""

LOGKIT_EXPORT_PROCESS = "LOGKIT_EXPORT_PROCESS"
"""``true``/``false``: export OTLP logs and spans through a helper process per app process, off
the app's interpreter (default ``true``; exporters passed to ``configure()`` and the ``console``
span exporter always stay in the app)."""

LOGKIT_GC_FREEZE = "LOGKIT_GC_FREEZE"
"""``true``/``false``: at the first request a process serves, move every object start-up left
alive into the interpreter's permanent generation (``gc.freeze()``), so that full garbage
collections no longer walk them: a lower p99 (default ``false``: it changes when the app's own
start-up memory can be reclaimed)."""

LOGKIT_SQL_COMMENTER = "LOGKIT_SQL_COMMENTER"
"""``true``/``false``: append a sqlcommenter comment with ``traceparent`` and ``request_id`` to
every SQL statement SQLAlchemy sends, so the database's own logs name the request and the trace
(default ``false``: a comment that differs per statement defeats prepared-statement and plan
caches; README.md "Follow one request" has the numbers)."""

LOGKIT_REQUEST_BUFFER = "LOGKIT_REQUEST_BUFFER"
"""A level (``DEBUG``, ``INFO``, ...) below ``LOGKIT_LOG_LEVEL``: a request's lines at or above it
but below ``LOGKIT_LOG_LEVEL`` are held for that request and written, marked ``buffered: true``,
only when it ends with a 5xx, an unhandled exception or after ``LOGKIT_SLOW_REQUEST_MS``
(default: off). Jobs get the same buffer."""

LOGKIT_REQUEST_BUFFER_MAX = "LOGKIT_REQUEST_BUFFER_MAX"
"""Lines held per request (or job) by the request buffer; the oldest go first (default ``200``)."""

LOGKIT_SLOW_REQUEST_MS = "LOGKIT_SLOW_REQUEST_MS"
"""Milliseconds after which a request counts as slow and its buffered lines are written
(default ``1000``)."""

LOGKIT_DEDUP_WINDOW = "LOGKIT_DEDUP_WINDOW"
"""Seconds of the repeated-error window: the same ``error_fingerprint`` is written at most
``LOGKIT_DEDUP_BURST`` times per window, then one ``repeated error suppressed`` line with the
count (default: off)."""

LOGKIT_DEDUP_BURST = "LOGKIT_DEDUP_BURST"
"""Lines of one error fingerprint written per ``LOGKIT_DEDUP_WINDOW`` (default ``5``)."""

ALL: tuple[str, ...] = (
    LOGKIT_ENV,
    LOGKIT_LOG_LEVEL,
    LOGKIT_LOG_FORMAT,
    LOGKIT_REQUEST_ID_HEADER,
    LOGKIT_GATEWAYS,
    LOGKIT_REDACT_KEYS,
    LOGKIT_BODY_SUMMARY_MAX,
    LOGKIT_TRUSTED_PROXIES,
    LOGKIT_EXCLUDED_URLS,
    LOGKIT_EXPORT_QUEUE_SIZE,
    LOGKIT_SHUTDOWN_TIMEOUT,
    LOGKIT_EXPORT_PROCESS,
    LOGKIT_GC_FREEZE,
    LOGKIT_SQL_COMMENTER,
    LOGKIT_REQUEST_BUFFER,
    LOGKIT_REQUEST_BUFFER_MAX,
    LOGKIT_SLOW_REQUEST_MS,
    LOGKIT_DEDUP_WINDOW,
    LOGKIT_DEDUP_BURST,
)
"""Every variable above, in documentation order."""
