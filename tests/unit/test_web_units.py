"""Pure logic of the request context: request ids, client_ip, body capture and its redacted summary."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_logkit.redact import Redactor
from otel_logkit.web.body import BodyCapture
from otel_logkit.web.client_ip import client_ip
from otel_logkit.web.request_id import new_request_id, sane_request_id
from tests.support.cards import luhn_complete

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([b"abc-123"], "abc-123"),
        ([b"A.b:c-d_e"], "A.b:c-d_e"),
        ([b"x" * 128], "x" * 128),
        ([b"x" * 129], None),
        ([], None),
        ([b""], None),
        ([b"a b"], None),
        ([b"a\r\nb"], None),
        ([b"\xff"], None),
        ([b"id/1"], None),
        ([b"same", b"same"], "same"),
        ([b"one", b"two"], None),
    ],
    ids=[
        "plain",
        "all-allowed-characters",
        "128-characters",
        "129-characters",
        "absent",
        "empty",
        "space",
        "crlf",
        "not-utf8",
        "slash",
        "repeated-same",
        "repeated-different",
    ],
)
def test_sane_request_id(values: list[bytes], expected: str | None) -> None:
    """Only 1-128 characters of [A-Za-z0-9._:-], present once or repeated identically, are honoured."""
    assert sane_request_id(values) == expected


def test_new_request_ids_are_distinct_hex() -> None:
    """Generated ids are 32 hex characters and do not repeat."""
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in ids)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", ["1.1.1.1"], "203.0.113.5"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["6.6.6.6, 198.51.100.1, 10.2.2.2"], "198.51.100.1"),
        ("10.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["10.3.3.3, 10.2.2.2"], "10.3.3.3"),
        ("10.0.0.1", ["<script>, 10.2.2.2"], "10.2.2.2"),
        ("10.0.0.1", ["garbage"], "10.0.0.1"),
        ("10.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.0.0.1", ["[2001:db9::1]:443"], "2001:db9::1"),
        ("2001:db8::5", ["2001:db9::1"], "2001:db9::1"),
        (None, ["198.51.100.1"], None),
    ],
    ids=[
        "untrusted-peer-ignores-header",
        "trusted-peer-no-header",
        "trusted-peer-one-hop",
        "right-most-untrusted",
        "repeated-headers",
        "all-trusted-takes-left-most",
        "garbage-stops-the-walk",
        "only-garbage",
        "ipv4-with-port",
        "ipv6-bracketed",
        "ipv6-proxy",
        "unix-socket",
    ],
)
def test_client_ip(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    """The socket peer, unless it is a trusted proxy: then the right-most untrusted forwarded hop."""
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_client_ip_without_trusted_proxies_is_the_peer() -> None:
    """With no LOGKIT_TRUSTED_PROXIES the header is never read."""
    assert client_ip("10.0.0.1", ["198.51.100.1"], ()) == "10.0.0.1"


def test_capture_keeps_a_bounded_prefix_and_counts_all() -> None:
    """Feeding 10 MB keeps the limit plus slack and counts every byte."""
    capture = BodyCapture(512, "application/json")
    for _ in range(10_000):
        capture.feed(b"x" * 1000)
    assert capture.size == 10_000_000
    assert len(capture.kept) <= 512 + 64


def test_capture_of_multipart_keeps_nothing() -> None:
    """Multipart bodies are counted, never kept; the summary is kind and size."""
    capture = BodyCapture(512, "multipart/form-data; boundary=x")
    capture.feed(b"--x\r\npassword=hunter2\r\n")
    assert bytes(capture.kept) == b""
    assert "[multipart/form-data, 23 bytes]" == capture.summary(Redactor())


def test_empty_body_summary_is_empty() -> None:
    """Nothing read, nothing to summarize."""
    assert "" == BodyCapture(512, "application/json").summary(Redactor())


def test_binary_body_summary_is_kind_and_size() -> None:
    """Binary content is described, not shown."""
    capture = BodyCapture(512, None)
    capture.feed(b"\x00\x01secret\xff")
    assert "[binary, 9 bytes]" == capture.summary(Redactor())


@pytest.mark.parametrize(
    "text",
    [
        '{"password": "hunter2"}',
        '{"user": {"Password": "hunter2"}}',
        '{"new_password":"hunter2","x":1}',
        '{"password": "hunt\\"er2"}',
        '{"password": "hunter2',
        "password=hunter2&user=ann",
        "user=ann&user_password=hunter2",
        "card=4242424242424242",
        '{"pan": "4242 4242 4242 4242"}',
        "paid with 4242-4242-4242-4242 today",
        '{"note": "5555555555554444"}',
    ],
    ids=[
        "json",
        "nested-json",
        "suffix-key",
        "escaped-quote",
        "unterminated",
        "form",
        "form-suffix-key",
        "form-card",
        "spaced-card",
        "card-in-text",
        "card-under-innocent-key",
    ],
)
def test_summary_redaction(text: str) -> None:
    """Neither a password nor a card number survives the summary, whatever the body's shape."""
    capture = BodyCapture(512, "application/json")
    capture.feed(text.encode())
    summary = capture.summary(Redactor())
    assert "hunter2" not in summary
    assert "hunt" not in summary
    digits = "".join(ch for ch in summary if ch.isdigit())
    assert "4242424242424242" not in digits
    assert "5555555555554444" not in digits


@given(
    prefix=st.text(max_size=600),
    # Card numbers start with a card network's digit (2-6): 13-19 digits in all.
    digits=st.builds(str.__add__, st.sampled_from("23456"), st.text(alphabet="0123456789", min_size=11, max_size=17)),
    separator=st.sampled_from(["", " ", "-"]),
    password=st.text(alphabet=st.characters(blacklist_characters='"\\'), min_size=6, max_size=40),
    limit=st.integers(min_value=16, max_value=600),
)
def test_no_card_or_password_survives_the_summary(
    prefix: str, digits: str, separator: str, password: str, limit: int
) -> None:
    """Property: whatever surrounds them and wherever the cut falls, no card or password leaks."""
    card = luhn_complete(digits)
    grouped = separator.join(card[i : i + 4] for i in range(0, len(card), 4))
    body = json.dumps({"note": prefix, "card": grouped, "password": "PW" + password + "PW"})
    capture = BodyCapture(limit, "application/json")
    capture.feed(body.encode())
    summary = capture.summary(Redactor(max_bytes=limit))
    # The sizes in the truncation markers are not body content: joined to the body's last
    # digits they could spell the card by accident.
    content = re.sub(r"…\[truncated(?::)? \d+ (?:more|bytes|bytes in all)\]", "", summary)
    assert card not in "".join(ch for ch in content if ch.isdigit() or ch == "*").replace("*", "")
    assert "PW" + password not in summary


def test_summary_leaves_ordinary_text() -> None:
    """Innocent fields pass through the summary."""
    capture = BodyCapture(512, "application/json")
    capture.feed(b'{"item": "tea", "quantity": 2}')
    assert '{"item":"tea","quantity":2}' == capture.summary(Redactor())


def test_summary_is_truncated_with_size_note() -> None:
    """A long body is cut to the limit and says how much was left out."""
    capture = BodyCapture(32, "text/plain")
    capture.feed(b"a" * 1000)
    summary = capture.summary(Redactor(max_bytes=32))
    assert "a" * 32 + "…[truncated: 1000 bytes in all]" == summary
    assert len(summary.encode()) < 80
