"""Redaction of secrets and personal data wherever data leaves the process."""

from __future__ import annotations

from otel_logkit.redact.detectors import (
    Detector,
    register_detector,
    registered_detectors,
    unregister_detector,
)
from otel_logkit.redact.engine import Redactor
from otel_logkit.redact.keys import SAFE_KEYS, KeyKind, classify_key
from otel_logkit.redact.processors import RedactingProcessor, RedactingSpanExporter
from otel_logkit.redact.text import REDACTED, Redacted

__all__ = [
    "REDACTED",
    "SAFE_KEYS",
    "Detector",
    "KeyKind",
    "Redacted",
    "RedactingProcessor",
    "RedactingSpanExporter",
    "Redactor",
    "classify_key",
    "register_detector",
    "registered_detectors",
    "unregister_detector",
]
