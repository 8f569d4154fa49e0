"""Masks for values stored under sensitive keys: keep what helps debugging, never the secret."""

from __future__ import annotations

import re

from otel_logkit.redact.detectors import digits_of, mask_card, mask_email, mask_phone
from otel_logkit.redact.keys import KeyKind
from otel_logkit.redact.text import REDACTED

# What each mask looks like, so that masking twice changes nothing: data redacted at one
# boundary (a gateway summary) crosses the next (the log line carrying it) intact.
_ALREADY_MASKED: dict[KeyKind, re.Pattern[str]] = {
    KeyKind.CARD: re.compile(r"\*{4}\d{4}"),
    KeyKind.PHONE: re.compile(r"\*{2,11}\d{4}"),
    KeyKind.EMAIL: re.compile(r"\*\*\*@[^\s@]+"),
    KeyKind.SMS_CONTENT: re.compile(r"\[\d+ chars\]"),
}


def mask_for_key(kind: KeyKind, text: str) -> str:
    """The mask of a scalar value (as text) stored under a key of the given sensitive ``kind``."""
    already = _ALREADY_MASKED.get(kind)
    if already is not None and already.fullmatch(text):
        return text
    if kind is KeyKind.CARD:
        return mask_card(text) if len(digits_of(text)) >= 12 else REDACTED
    if kind is KeyKind.PHONE:
        return mask_phone(text)
    if kind is KeyKind.EMAIL:
        return mask_email(text) if "@" in text or "%40" in text else REDACTED
    if kind is KeyKind.SMS_CONTENT:
        return f"[{len(text)} chars]"
    return REDACTED
