"""Redaction rules, table by table: keys, value detectors, masks, URLs, bodies and bounds."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from otel_logkit.config import Settings
from otel_logkit.redact import (
    REDACTED,
    Detector,
    KeyKind,
    Redactor,
    classify_key,
    register_detector,
    unregister_detector,
)


@pytest.fixture
def redactor() -> Redactor:
    """A redactor with one extra key, as ``LOGKIT_REDACT_KEYS=iban`` would configure it."""
    return Redactor(["iban"], max_bytes=512)


KEY_CASES = [
    ("password", False, KeyKind.SECRET),
    ("PASSWORD", False, KeyKind.SECRET),
    ("user_passwd", False, KeyKind.SECRET),
    ("client_secret", False, KeyKind.SECRET),
    ("accessToken", False, KeyKind.SECRET),
    ("X-Api-Key", False, KeyKind.SECRET),
    ("apikey", False, KeyKind.SECRET),
    ("Authorization", False, KeyKind.SECRET),
    ("http.request.header.authorization", False, KeyKind.SECRET),
    ("Cookie", False, KeyKind.SECRET),
    ("cvv", False, KeyKind.SECRET),
    ("card[cvc]", False, KeyKind.SECRET),
    ("otp", False, KeyKind.SECRET),
    ("pin", False, KeyKind.SECRET),
    ("verification_code", False, KeyKind.SECRET),
    ("iban", False, KeyKind.SECRET),
    ("card", False, KeyKind.CARD),
    ("card_number", False, KeyKind.CARD),
    ("pan", False, KeyKind.CARD),
    ("card[number]", False, KeyKind.CARD),
    ("payment_method[card][number]", False, KeyKind.CARD),
    ("phone", False, KeyKind.PHONE),
    ("mobile", False, KeyKind.PHONE),
    ("msisdn", False, KeyKind.PHONE),
    ("email", False, KeyKind.EMAIL),
    ("customer[email]", False, KeyKind.EMAIL),
    ("to", False, KeyKind.NORMAL),
    ("to", True, KeyKind.PHONE),
    ("To", True, KeyKind.PHONE),
    ("Body", True, KeyKind.SMS_CONTENT),
    ("message", True, KeyKind.SMS_CONTENT),
    ("message", False, KeyKind.NORMAL),
    ("shipping", False, KeyKind.NORMAL),
    ("company", False, KeyKind.NORMAL),
    ("order_id", False, KeyKind.SAFE),
    ("customerId", False, KeyKind.SAFE),
    ("trace_id", False, KeyKind.SAFE),
    ("amount", False, KeyKind.SAFE),
    ("currency", False, KeyKind.SAFE),
    ("timestamp", False, KeyKind.SAFE),
    ("metadata[order_id]", False, KeyKind.SAFE),
    ("http.route", False, KeyKind.SAFE),
]


@pytest.mark.parametrize(("key", "sms", "expected"), KEY_CASES, ids=[f"{k}-sms{s}" for k, s, _ in KEY_CASES])
def test_key_classification(key: str, sms: bool, expected: KeyKind) -> None:
    """Each key is recognised case-insensitively, bracketed and dotted forms included."""
    assert expected == classify_key(key, {"iban"}, sms=sms)


TEXT_CASES = [
    ("visa_spaces", "paid with 4242 4242 4242 4242 today", "paid with ****4242 today"),
    ("visa_dashes", "card 4111-1111-1111-1111.", "card ****1111."),
    ("amex", "amex 3782 822463 10005 ok", "amex ****0005 ok"),
    ("visa_13", "old card 4222222222222", "old card ****2222"),
    ("e164", "sms to +15550100123 sent", "sms to *******0123 sent"),
    ("e164_spaced", "call +44 20 7946 0958", "call ********0958"),
    ("nanp_local", "call (555) 010-0123 now", "call ******0123 now"),
    ("uk_local", "call 020 7946 0958", "call *******0958"),
    ("email", "mail jane.doe+x@example.co.uk now", "mail ***@example.co.uk now"),
    ("email_encoded", "?to=jane%40example.com", "?to=***@example.com"),
    ("bearer", "sent Bearer abcDEF123456789xyz", f"sent Bearer {REDACTED}"),
    (
        "jwt",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFU x",
        f"token {REDACTED} x",
    ),
    ("kv_equals", "login password=hunter2 failed", f"login password={REDACTED} failed"),
    ("kv_colon_quoted", 'cfg "api_key": "abc 123"', f'cfg "api_key": "{REDACTED}"'),
    ("kv_suffix_key", "client_secret=xyz&x=1", f"client_secret={REDACTED}&x=1"),
    ("kv_auth_header", "Authorization: Bearer abc.def", f"Authorization: {REDACTED}"),
    ("kv_extra_key", "iban=DE89370400440532013000", f"iban={REDACTED}"),
    ("kv_short_word", "user_pin: 1234", f"user_pin: {REDACTED}"),
    ("not_kv_inside_word", "shipping=fast", "shipping=fast"),
    ("luhn_invalid", "ref 4242 4242 4242 4241", "ref 4242 4242 4242 4241"),
    ("epoch_ms", "at 1700000000000 ms", "at 1700000000000 ms"),
    ("iso_datetime", "at 2024-01-15T10:30:00.123Z", "at 2024-01-15T10:30:00.123Z"),
    ("uuid", "id 123e4567-e89b-12d3-a456-426614174000", "id 123e4567-e89b-12d3-a456-426614174000"),
    ("amount", "total 12345.67 EUR", "total 12345.67 EUR"),
    ("trace_id", "trace 4bf92f3577b34da6a3ce929d0e0e4736", "trace 4bf92f3577b34da6a3ce929d0e0e4736"),
    ("order_id", "order ORD-2024-000123", "order ORD-2024-000123"),
    ("ipv4", "from 192.168.100.200", "from 192.168.100.200"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_redact_text(redactor: Redactor, text: str, expected: str) -> None:
    """Value detectors mask what they find, keep what helps debugging, and leave the rest."""
    assert expected == redactor.redact_text(text)


EVENT_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "secret_keys",
        {"event": "login", "password": "hunter2", "API_KEY": "k", "Cookie": "s=1"},
        {"event": "login", "password": REDACTED, "API_KEY": REDACTED, "Cookie": REDACTED},
    ),
    (
        "nested",
        {"event": "x", "req": {"headers": {"Authorization": "Bearer abc"}, "items": [{"cvv": 123}]}},
        {"event": "x", "req": {"headers": {"Authorization": REDACTED}, "items": [{"cvv": REDACTED}]}},
    ),
    (
        "card_under_key",
        {"event": "x", "card": {"number": "4242424242424242", "exp_month": 12, "brand": "visa"}},
        {"event": "x", "card": {"number": "****4242", "exp_month": 12, "brand": "visa"}},
    ),
    ("bracketed", {"card[number]": "4000056655665556"}, {"card[number]": "****5556"}),
    ("phone_key", {"phone": "5550100123"}, {"phone": "******0123"}),
    ("email_key", {"email": "a@b.io"}, {"email": "***@b.io"}),
    ("value_in_message", {"event": "paid by jane@x.io"}, {"event": "paid by ***@x.io"}),
    ("card_int", {"ref": 4242424242424242}, {"ref": "****4242"}),
    (
        "safe_keys_of_their_shape_untouched",
        {"order_id": "ord_8f3a91", "request_id": "7f9c2ba4e88f827d616045507605853e", "amount": 4242424242424242},
        {"order_id": "ord_8f3a91", "request_id": "7f9c2ba4e88f827d616045507605853e", "amount": 4242424242424242},
    ),
    (
        "safe_keys_value_scanned_when_not_their_shape",
        {
            "order_id": "4242424242424242",
            "request_id": "a@b.io",
            "host": "4111111111111111",
            "path": "/u/jo@x.io/reset",
        },
        {"order_id": "****4242", "request_id": "***@b.io", "host": "****1111", "path": "/u/***@x.io/reset"},
    ),
    ("json_string", {"body": '{"cvc": "123", "n": 1}'}, {"body": f'{{"cvc":"{REDACTED}","n":1}}'}),
    (
        "exception_text",
        {"exception": 'Traceback...\nValueError: bad card 4111 1111 1111 1111 for "jo@x.io"'},
        {"exception": 'Traceback...\nValueError: bad card ****1111 for "***@x.io"'},
    ),
    ("none_and_bools_kept", {"password": None, "otp_sent": True}, {"password": None, "otp_sent": True}),
    ("extra_key", {"IBAN": "DE89370400440532013000"}, {"IBAN": REDACTED}),
]


@pytest.mark.parametrize(("event", "expected"), [c[1:] for c in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_redact_event(redactor: Redactor, event: dict[str, Any], expected: dict[str, Any]) -> None:
    """Event dicts are redacted by key and by value, recursively, safe keys untouched."""
    assert expected == redactor.redact_event(event)


def test_redact_event_keeps_exc_info_for_later_processors(redactor: Redactor) -> None:
    """``exc_info`` keeps its type, so ``format_exc_info`` can still run after redaction."""
    exc_info = (ValueError, ValueError("x"), None)
    assert exc_info is redactor.redact_event({"exc_info": exc_info})["exc_info"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("card", "4242424242424242"), ("phone", "+15550100123"), ("email", "jo@x.io"), ("password", "p")],
    ids=["card", "phone", "email", "secret"],
)
def test_masking_is_idempotent(redactor: Redactor, key: str, value: str) -> None:
    """A masked value redacted again (next boundary, JSON summary in a log field) keeps its mask."""
    once = redactor.redact_event({key: value})
    assert redactor.redact_event(dict(once)) == once
    summary = redactor.summarize_params({key: value})
    assert redactor.redact_event({"params": summary})["params"] == summary


@pytest.mark.parametrize("text", [c[1] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_redact_text_is_idempotent(redactor: Redactor, text: str) -> None:
    """Redacting redacted text changes nothing (no ``[REDACTED]]``, no shrinking masks)."""
    once = redactor.redact_text(text)
    assert redactor.redact_text(once) == once


def test_same_secret_same_mask(redactor: Redactor) -> None:
    """Masks are deterministic: one secret always gives one mask."""
    first = redactor.redact_text("card 4242424242424242 phone +15550100123 token=abc")
    assert first == redactor.redact_text("card 4242424242424242 phone +15550100123 token=abc")


URL_CASES = [
    (
        "query_key",
        "https://api.x.com/v1/c?api_key=SECRET&amount=10",
        f"https://api.x.com/v1/c?api_key={REDACTED}&amount=10",
    ),
    ("userinfo", "https://bob:pw@api.x.com/", f"https://{REDACTED}@api.x.com/"),
    ("email_in_path", "https://x.com/users/jo@x.io/orders", "https://x.com/users/***@x.io/orders"),
    ("card_in_query", "https://x.com/p?ref=4242424242424242", "https://x.com/p?ref=****4242"),
    (
        "bracketed_query",
        "https://x.com/p?card%5Bcvc%5D=123&id=1",
        f"https://x.com/p?card%5Bcvc%5D={REDACTED}&id=1",
    ),
    ("clean", "https://x.com/v1/orders/42?page=2", "https://x.com/v1/orders/42?page=2"),
]


@pytest.mark.parametrize(("url", "expected"), [c[1:] for c in URL_CASES], ids=[c[0] for c in URL_CASES])
def test_redact_url(redactor: Redactor, url: str, expected: str) -> None:
    """URLs keep their shape; credentials and secret or detected query values are masked."""
    assert expected == redactor.redact_url(url)


BODY_CASES = [
    (
        "json",
        b'{"amount":100,"card":{"number":"4242424242424242","cvc":"123"},"email":"x@y.io"}',
        "application/json",
        False,
        f'{{"amount":100,"card":{{"number":"****4242","cvc":"{REDACTED}"}},"email":"***@y.io"}}',
    ),
    (
        "form",
        "amount=100&card[number]=4242424242424242&card[cvc]=123",
        "application/x-www-form-urlencoded",
        False,
        f"amount=100&card[number]=****4242&card[cvc]={REDACTED}",
    ),
    (
        "sms_form",
        "To=%2B15550100123&From=ShopCo&Body=Your+code+is+123456",
        "application/x-www-form-urlencoded; charset=utf-8",
        True,
        "To=*******0123&From=ShopCo&Body=[19 chars]",
    ),
    (
        "sms_json",
        b'{"to":"+15550100123","text":"code 999111","sender":"Shop"}',
        "application/json",
        True,
        '{"to":"*******0123","text":"[11 chars]","sender":"Shop"}',
    ),
    (
        "multipart",
        b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
        "multipart/form-data; boundary=b",
        False,
        "[multipart/form-data, 47 bytes]",
    ),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00", "image/png", False, "[image/png, 10 bytes]"),
    ("undecodable", b"\xff\xfe\x00abc", None, False, "[binary, 6 bytes]"),
    ("text", "hello jo@x.io", "text/plain", False, "hello ***@x.io"),
    ("empty", b"", "application/json", False, ""),
    ("none", None, None, False, ""),
]


@pytest.mark.parametrize(
    ("body", "content_type", "sms", "expected"), [c[1:] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES]
)
def test_summarize_body(
    redactor: Redactor, body: bytes | str | None, content_type: str | None, sms: bool, expected: str
) -> None:
    """Bodies are summarised by kind: JSON and forms redacted, multipart and binary by size."""
    assert expected == redactor.summarize_body(body, content_type, sms=sms)


def test_summary_is_truncated_with_marker() -> None:
    """A summary never exceeds ``max_bytes`` plus its truncation marker."""
    redactor = Redactor(max_bytes=64)
    summary = redactor.summarize_body(json.dumps({"items": list(range(1000))}), "application/json")
    head, marker, _ = summary.partition("…[truncated")
    assert marker
    assert len(head.encode()) <= 64


def _cost(work: Any) -> float:
    """The best of three wall-clock runs of ``work()`` (for a ratio between two sizes, not a budget)."""
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        work()
        runs.append(time.perf_counter() - started)
    return min(runs)


def _bounded(make: Any, run: Any, small: int, large: int) -> float:
    """How much more ``run`` costs on an input ``large / small`` times bigger (bounded work: about 1)."""
    small_input, large_input = make(small), make(large)
    return _cost(lambda: run(large_input)) / max(_cost(lambda: run(small_input)), 1e-6)


def test_ten_megabyte_body_costs_bounded_time(redactor: Redactor) -> None:
    """A 10 MB JSON body costs about what a 1 MB one does (cut first), and ends in a truncation marker."""

    def make(n: int) -> bytes:
        return b'{"note": "' + b"lorem ipsum 4242 " * n + b'", "card": "4242424242424242"}'

    assert _bounded(make, lambda body: redactor.summarize_body(body, "application/json"), 60_000, 600_000) < 4
    assert "…[truncated" in redactor.summarize_body(make(600_000), "application/json")


def test_ten_megabyte_log_field_costs_bounded_time(redactor: Redactor) -> None:
    """A 10 MB string field is cut before scanning (cost independent of its size), and the cut is marked."""

    def make(n: int) -> str:
        return "x=1 jo@x.io " * n

    assert _bounded(make, lambda text: redactor.redact_event({"payload": text}), 90_000, 900_000) < 4
    result = redactor.redact_event({"payload": make(900_000)})["payload"]
    assert "jo@x.io" not in result
    assert result.endswith("chars]")


def test_cut_through_a_card_does_not_leak_its_digits() -> None:
    """A secret split by the scan limit is dropped rather than left half-visible."""
    redactor = Redactor(max_bytes=64, scan_limit=1024)
    text = "a" * 1015 + " 4242 4242 4242 4242"
    redacted = redactor.redact_text(text)
    assert "4242" not in redacted
    assert redacted.endswith("chars]")


def test_ten_thousand_deep_json_costs_bounded_time(redactor: Redactor) -> None:
    """A 10,000-deep JSON body neither recurses nor stalls: it costs about what a 1,000-deep one does."""

    def make(depth: int) -> str:
        return '{"a":' * depth + "1" + "}" * depth

    assert _bounded(make, lambda body: redactor.summarize_body(body, "application/json"), 1_000, 10_000) < 15
    assert redactor.summarize_body(make(10_000), "application/json").startswith('{"a":')


def test_ten_thousand_deep_structure_is_cut_at_max_depth(redactor: Redactor) -> None:
    """A 10,000-deep Python structure in a log field ends in a depth marker, at the cost of a shallow one."""

    def make(depth: int) -> Any:
        deep: Any = {"password": "p"}
        for _ in range(depth):
            deep = {"n": deep}
        return deep

    assert _bounded(make, lambda deep: redactor.redact_event({"data": deep}), 1_000, 10_000) < 4
    result = redactor.redact_event({"data": make(10_000)})
    assert "nested too deep" in json.dumps(result)
    assert '"p"' not in json.dumps(result)


def test_wide_container_is_cut_at_max_items() -> None:
    """A huge list keeps ``max_items`` items and says how much was left out."""
    redactor = Redactor(max_items=10)
    result = redactor.redact_value(list(range(100)))
    assert len(result) == 11
    assert "truncated" in result[-1]


def test_redact_attributes_keeps_otel_types(redactor: Redactor) -> None:
    """Span attributes stay valid OpenTelemetry values after masking."""
    attrs = {
        "url.full": "https://x.com/a?token=abc&n=1",
        "url.query": "token=abc&page=2",
        "http.request.header.authorization": ("Bearer abc",),
        "http.response.status_code": 200,
        "app.tags": ("a", "jo@x.io"),
    }
    assert {
        "url.full": f"https://x.com/a?token={REDACTED}&n=1",
        "url.query": f"token={REDACTED}&page=2",  # a bare query string, not a URL
        "http.request.header.authorization": (REDACTED,),
        "http.response.status_code": 200,
        "app.tags": ("a", "***@x.io"),
    } == redactor.redact_attributes(attrs)


def test_registered_detector_applies_to_new_redactors() -> None:
    """``register_detector`` adds a value detector with its own mask."""
    register_detector("iban_value", r"\bDE\d{20}\b", "[IBAN]", triggers=("DE",))
    try:
        assert Redactor().redact_text("pay to DE89370400440532013000") == "pay to [IBAN]"
    finally:
        unregister_detector("iban_value")
    assert Redactor().redact_text("pay to DE89370400440532013000") == "pay to DE89370400440532013000"


def test_register_detector_rejects_duplicate_names() -> None:
    """A detector name is unique: built-in names cannot be taken over."""
    with pytest.raises(ValueError, match="already registered"):
        register_detector("card", r"x")


def test_detector_passed_to_one_redactor() -> None:
    """A ``Detector`` given to one redactor applies there only; a callable mask sees the match."""
    detector = Detector("ticket", r"TCK-\d+", lambda text: "TCK-" + "#" * (len(text) - 4))
    assert Redactor(detectors=[detector]).redact_text("ticket TCK-1234") == "ticket TCK-####"


def test_from_settings_reads_keys_and_summary_size() -> None:
    """``from_settings`` applies ``LOGKIT_REDACT_KEYS`` and ``LOGKIT_BODY_SUMMARY_MAX``."""
    settings = Settings.from_env({"LOGKIT_REDACT_KEYS": "tax_id", "LOGKIT_BODY_SUMMARY_MAX": "32"})
    redactor = Redactor.from_settings(settings)
    assert redactor.redact_event({"tax_id": "123"}) == {"tax_id": REDACTED}
    assert redactor.max_bytes == 32


def test_private_keys_pass_untouched(redactor: Redactor) -> None:
    """otel-logkit's private keys (timestamp in ns, flags) are never scanned or masked."""
    event = {"_logkit_ns": 4242424242424242, "_logkit_sampled": True, "note": "4242 4242 4242 4242"}
    redacted = redactor.redact_event(dict(event))
    assert 4242424242424242 == redacted["_logkit_ns"]
    assert redacted["_logkit_sampled"] is True
    assert "4242 4242 4242 4242" != redacted["note"]


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("4242-4242 4242", "424242424242"),
        ("", ""),
        ("ab\u0661\u0662c9", "9"),  # Arabic-Indic digits
        ("\udc80 7", "7"),  # a lone surrogate
        ("\uff10\uff112", "2"),  # full-width digits
    ],
)
def test_digits_of_keeps_ascii_digits_only(text: str, digits: str) -> None:
    """Non-ASCII digits and lone surrogates never count as card digits."""
    from otel_logkit.redact.detectors import digits_of

    assert digits == digits_of(text)


def test_attribute_cache_keeps_each_value_type() -> None:
    """``1``, ``True`` and ``1.0`` are equal as dict keys; each keeps its own type through the cache."""
    redactor = Redactor()
    results = [redactor.redact_attributes({"retries": value})["retries"] for value in (1, True, 1.0, True, 1)]
    assert [int, bool, float, bool, int] == [type(value) for value in results]


def test_private_event_keys_are_not_safe_in_nested_data() -> None:
    """A body key named like a private event key is redacted as data after the first log line."""
    redactor = Redactor()
    redactor.redact_event({"_record": object(), "stack_info": True, "event": "x"})
    nested = redactor.redact_value({"_record": "card 4242424242424242", "stack_info": "jo@x.io"})
    assert {"_record": "card ****4242", "stack_info": "***@x.io"} == nested
