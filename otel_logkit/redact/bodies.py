"""Redaction of URLs, query strings and HTTP bodies into short, safe summaries."""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING

from opentelemetry.semconv._incubating.attributes import http_attributes as old_http
from opentelemetry.semconv.attributes import url_attributes

from otel_logkit.redact.detectors import REDACTED

if TYPE_CHECKING:
    from otel_logkit.redact.engine import Redactor

URL_ATTRIBUTES: frozenset[str] = frozenset(
    {url_attributes.URL_FULL, url_attributes.URL_QUERY, old_http.HTTP_URL, old_http.HTTP_TARGET}
)
"""Span attributes that hold a URL (or its query), redacted as URLs rather than as text."""

QUERY_ATTRIBUTE = url_attributes.URL_QUERY
"""The one URL attribute that holds a query string alone."""

_MAX_FIELDS = 1000
_QUOTE_SAFE = "*[]@:/,.-_~ "


def redact_url(redactor: Redactor, url: str) -> str:
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


def redact_query(redactor: Redactor, query: str, *, sms: bool = False) -> str:
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


def summarize_body(redactor: Redactor, body: bytes | str | None, content_type: str | None, *, sms: bool) -> str:
    """See :meth:`Redactor.summarize_body`."""
    if body is None or len(body) == 0:
        return ""
    size = len(body)
    media = _media_type(content_type)
    if media.startswith("multipart/"):
        return f"[{media}, {size} bytes]"
    limit = redactor.scan_limit
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body[:limit])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A cut through a multi-byte character is fine; anything else is binary.
            if size <= limit or exc.start < len(raw) - 4:
                return f"[{media or 'binary'}, {size} bytes]"
            text = raw[: exc.start].decode("utf-8")
    else:
        text = body[:limit]
    if _is_binary(media) or "\x00" in text[:1024]:
        return f"[{media or 'binary'}, {size} bytes]"
    truncated = size > limit
    if media.endswith("json") or (not media and text.lstrip()[:1] in "{["):
        summary = _summarize_json(redactor, text, sms=sms, truncated=truncated)
    elif media == "application/x-www-form-urlencoded" or (not media and "=" in text and " " not in text[:256]):
        summary = redact_query(redactor, _drop_partial_field(text) if truncated else text, sms=sms)
    else:
        summary = redactor.redact_text(text)
    if truncated:
        summary += f"…[truncated {size - len(text)} more]"
    return truncate_bytes(summary, redactor.max_bytes)


def _is_binary(media: str) -> bool:
    return media.startswith(("image/", "audio/", "video/", "font/")) or media in (
        "application/octet-stream",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/protobuf",
        "application/x-protobuf",
    )


def _summarize_json(redactor: Redactor, text: str, *, sms: bool, truncated: bool) -> str:
    if not truncated:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        else:
            redacted = redactor.redact_value(parsed, None, sms=sms)
            return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"), default=str)
    # Too large or too deep to parse: redact as text; secret "key": "value" pairs are still caught.
    if truncated:
        text = cut_for_scan(text, len(text))
    return redactor.redact_text(" " + text).lstrip()


def _drop_partial_field(text: str) -> str:
    head, _, _ = text.rpartition("&")
    return head


def cut_for_scan(text: str, limit: int) -> str:
    """Cut an oversized string before scanning it, dropping a trailing partial token.

    A secret split by the cut (``4242 4242 42``) would no longer match its detector, so the last
    token-like run (up to 80 characters) of the kept part is dropped too.
    """
    kept = text[:limit]
    tail = kept[-80:]
    index = len(tail)
    while index > 0 and (tail[index - 1].isalnum() or tail[index - 1] in "@.+-_()%= "):
        index -= 1
    return kept[: len(kept) - len(tail) + index]


def truncate_bytes(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes, ending with a truncation marker."""
    if len(text) * 4 <= max_bytes:
        return text
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    kept = encoded[:max_bytes].decode("utf-8", "ignore")
    return f"{kept}…[truncated {len(encoded) - max_bytes} bytes]"
