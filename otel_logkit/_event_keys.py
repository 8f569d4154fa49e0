"""otel-logkit's private event-dict keys (a leaf: read by the log chain and the redactor alike)."""

from __future__ import annotations

NS_KEY = "_logkit_ns"
"""The timestamp in nanoseconds, from the stamper to the exporter."""
SAMPLED_KEY = "_logkit_sampled"
"""Set when the line's span is sampled (the record's trace flags)."""
NO_EXPORT_KEY = "_logkit_no_export"
"""Set on the SDK's own lines: stdout only."""
SET_ASIDE_KEY = "_logkit_user"
"""User values of contract fields, set aside while otel-logkit sets its own."""

EXC_KEY = "_logkit_exc"
"""The exception of an error line, for its fingerprint (its traceback's application frame)."""

PRIVATE_KEYS = frozenset({NS_KEY, SAMPLED_KEY, NO_EXPORT_KEY, SET_ASIDE_KEY, EXC_KEY})
"""otel-logkit's own event-dict keys: bookkeeping between processors, never rendered."""
