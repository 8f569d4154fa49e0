"""The request id: honour a sane incoming one, otherwise generate one."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MAX_LENGTH = 128
"""Longest incoming request id that is honoured."""

_SANE = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> str:
    """A fresh request id: 32 lower-case hex characters, 128 random bits (as a UUID4's hex, 5x cheaper)."""
    return os.urandom(16).hex()


def sane_request_id(values: Iterable[bytes]) -> str | None:
    """The incoming request id if it can be trusted in a log line, else ``None``.

    A header is honoured when it is present once (or repeated with the same value) and is 1 to
    128 characters of ``[A-Za-z0-9._:-]``. Anything else (empty, too long, other characters,
    non-UTF-8 bytes, several different values) is replaced by the caller, never trusted.

    Args:
        values: every raw value of the request-id header, in order.
    """
    found: bytes | None = None
    for value in values:
        if found is not None and value != found:
            return None
        found = value
    if found is None or not _SANE.fullmatch(found):
        return None
    return found.decode("ascii")
