"""Redaction of URLs, query strings and HTTP bodies into short, safe summaries."""

from __future__ import annotations

import json
import urllib.parse

from otel_logkit.redact.text import REDACTED, TextRedactor, cut_bytes, cut_for_scan, dumps

_MAX_FIELDS = 1000
_QUOTE_SAFE = "*[]@:/,.-_~ "


def redact_url(redactor: TextRedactor, url: str) -> str:
    """Mask user info, secret query parameters and detected values (e-mails in paths, ...)."""
    if "?" not in url and "@" not in url and redactor.redact_text(url) == url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redactor.redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    path = parts.path
    redacted_path = redactor.redact_text(urllib.parse.unquote(path)) if path else ""
    if redacted_path != urllib.parse.unquote(path):
        path = urllib.parse.quote(redacted_path, safe="/*[]@:,.-_~")
    query = redact_query(redactor, parts.query) if parts.query else ""
    fragment = redactor.redact_text(parts.fragment) if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact_query(redactor: TextRedactor, query: str, *, sms: bool = False) -> str:
    """Redact ``a=1&b=2`` by key (bracketed keys included) and by value; order is kept."""
    if query.startswith("?"):
        query = query[1:]
    pieces = query.split("&", _MAX_FIELDS)
    rest = len(pieces) > _MAX_FIELDS
    out: list[str] = []
    for piece in pieces[:_MAX_FIELDS]:
        if not piece:
            continue
        raw_key, sep, raw_value = piece.partition("=")
        key = urllib.parse.unquote_plus(raw_key)
        value = urllib.parse.unquote_plus(raw_value)
        redacted = redactor.redact_value(value, key, sms=sms)
        if not isinstance(redacted, str):
            redacted = str(redacted)
        if redacted == value:
            out.append(piece)
            continue
        safe_key = raw_key if redactor.redact_text(key) == key else urllib.parse.quote(redactor.redact_text(key))
        out.append(f"{safe_key}{sep}{urllib.parse.quote(redacted, safe=_QUOTE_SAFE)}")
    if rest:
        out.append("[truncated: more fields]")
    return "&".join(out)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def summarize_body(
    redactor: TextRedactor, body: bytes | str | None, content_type: str | None, *, sms: bool, size: int | None = None
) -> str:
    """See :meth:`Redactor.summarize_body`."""
    if size is None:
        size = len(body) if body is not None else 0
    if size == 0:
        return ""
    body = body if body is not None else b""
    media = _media_type(content_type)
    if media.startswith("multipart/"):
        return f"[{media}, {size} bytes]"
    limit = redactor.scan_limit
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body[:limit])
        kept = len(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A cut through a multi-byte character is fine; anything else is binary.
            if size <= kept or exc.start < kept - 4:
                return f"[{media or 'binary'}, {size} bytes]"
            text = raw[: exc.start].decode("utf-8")
    else:
        text = body[:limit]
        kept = len(text)
    if _is_binary(media) or "\x00" in text[:1024]:
        return f"[{media or 'binary'}, {size} bytes]"
    truncated = size > kept
    if media.endswith("json") or (not media and text.lstrip()[:1] in "{["):
        summary = _summarize_json(redactor, text, sms=sms, truncated=truncated)
    elif media == "application/x-www-form-urlencoded" or (not media and "=" in text and " " not in text[:256]):
        summary = redact_query(redactor, _drop_partial_field(text) if truncated else text, sms=sms)
    else:
        summary = redactor.redact_text(text)
    return _with_size_note(summary, size, redactor.max_bytes, truncated=truncated)


def _with_size_note(summary: str, size: int, max_bytes: int, *, truncated: bool) -> str:
    """``summary`` within ``max_bytes``; when anything was left out, the body's whole size after it."""
    cut = cut_bytes(summary, max_bytes)
    if truncated or cut != summary:
        return f"{cut}…[truncated: {size} bytes in all]"
    return summary


def _is_binary(media: str) -> bool:
    return media.startswith(("image/", "audio/", "video/", "font/")) or media in (
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/protobuf",
        "application/x-protobuf",
    )


def _summarize_json(redactor: TextRedactor, text: str, *, sms: bool, truncated: bool) -> str:
    if not truncated:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        else:
            return dumps(redactor.redact_value(parsed, None, sms=sms))
    # Too large or too deep to parse: redact as text; secret "key": "value" pairs are still caught.
    if truncated:
        text = cut_for_scan(text, len(text))
    return redactor.redact_text(" " + text).lstrip()


def _drop_partial_field(text: str) -> str:
    head, _, _ = text.rpartition("&")
    return head
