"""False positives: ids, amounts, timestamps and dates must come out of redaction intact.

Run with ``-s`` to see the measured false-positive rate per family.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable

import pytest

from otel_logkit.redact import Redactor
from tests.support.cards import TEST_CARDS

REDACTOR = Redactor()
PER_FAMILY = 400


def _order_id(rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return "ord_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=16))
    if style == 1:
        return f"ORD-{rng.randint(2015, 2030)}-{rng.randint(0, 999_999):06d}"
    return str(rng.randint(100_000, 9_999_999_999))


def _amount(rng: random.Random) -> str:
    value = rng.randint(0, 10_000_000) / 100
    return rng.choice([f"{value:.2f}", f"{value:,.2f}", str(int(value)), f"{value:.2f} EUR"])


def _epoch_ms(rng: random.Random) -> str:
    return str(rng.randint(1_400_000_000_000, 2_000_000_000_000))


def _iso_date(rng: random.Random) -> str:
    y, mo, d = rng.randint(2000, 2035), rng.randint(1, 12), rng.randint(1, 28)
    h, mi, s, ms = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999)
    date, clock = f"{y}-{mo:02d}-{d:02d}", f"{h:02d}:{mi:02d}:{s:02d}"
    return rng.choice([date, f"{date}T{clock}Z", f"{date}T{clock}.{ms:03d}+02:00", f"{date} {clock}"])


FAMILIES: dict[str, Callable[[random.Random], str]] = {
    "order_id": _order_id,
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "amount": _amount,
    "epoch_ms": _epoch_ms,
    "trace_id": lambda rng: f"{rng.getrandbits(128):032x}",
    "span_id": lambda rng: f"{rng.getrandbits(64):016x}",
    "iso_date": _iso_date,
}


def _altered(value: str) -> int:
    """How many of four placements (field, message, JSON body, query) changed ``value``."""
    placements = [
        REDACTOR.redact_event({"ref": value})["ref"] != value,
        REDACTOR.redact_text(f"processed {value} ok") != f"processed {value} ok",
        json.loads(REDACTOR.summarize_body(json.dumps({"ref": value}), "application/json"))["ref"] != value,
        REDACTOR.redact_url(f"https://x.io/p?ref={value}") != f"https://x.io/p?ref={value}",
    ]
    return sum(placements)


def false_positive_rates(per_family: int = PER_FAMILY, seed: int = 20261123) -> dict[str, float]:
    """The share of placements altered, per corpus family, over a seeded corpus."""
    rng = random.Random(seed)
    rates: dict[str, float] = {}
    for name, make in FAMILIES.items():
        altered = sum(_altered(make(rng)) for _ in range(per_family))
        rates[name] = altered / (4 * per_family)
    return rates


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_false_positive_rate_is_zero_on_the_corpus(family: str) -> None:
    """No id, amount, timestamp, trace id or date in the seeded corpus is altered."""
    rate = false_positive_rates()[family]
    print(f"false-positive rate {family}: {rate:.4%}")
    assert rate == 0.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("created", 1700000000000),
        ("timestamp", "2024-01-15T10:30:00Z"),
        ("trace_id", "0af7651916cd43dd8448eb211c80319c"),
        ("order_id", "ord_4242424242"),
        ("order_id", "7d3b9c4e-1f2a-4b8c-9d0e-5f6a7b8c9d0e"),
        ("amount", 4242424242424242),
        ("amount", "1999"),
    ],
    ids=["epoch-int", "iso", "trace", "token-id", "uuid", "amount-int", "amount-str"],
)
def test_allowlisted_keys_keep_values_of_their_shape(key: str, value: object) -> None:
    """Under allow-listed keys, values of the promised shape (ids, amounts, timestamps) are kept."""
    assert {key: value} == REDACTOR.redact_event({key: value})


@pytest.mark.parametrize(
    ("key", "value", "masked"),
    [
        ("order_id", "4242424242424242", "****4242"),
        ("trace_id", "4242424242424242", "****4242"),
        ("host", "4111 1111 1111 1111", "****1111"),
        ("name", "jane.doe@example.com", "***@example.com"),
        ("path", "/users/jane.doe@example.com/reset", "/users/***@example.com/reset"),
        ("operation", "charge 4111111111111111", "charge ****1111"),
    ],
    ids=["card-as-id", "card-as-trace-id", "card-under-host", "email-under-name", "email-in-path", "card-in-operation"],
)
def test_allowlisted_keys_do_not_shield_values_of_another_shape(key: str, value: str, masked: str) -> None:
    """By value, whatever the key: an allow-listed key never hides a secret of another shape."""
    assert {key: masked} == REDACTOR.redact_event({key: value})


def test_sixteen_digit_numeric_references_are_a_known_limit() -> None:
    """Bare 16-digit numbers outside allow-listed keys are cards when Luhn-valid (~5.6%).

    A numeric reference that happens to pass the Luhn check and starts like a card network is
    indistinguishable from a card number, under an ``*_id`` key too (a card number sent as an id
    is still a card number); ids with a letter in them are kept.
    """
    rng = random.Random(7)
    values = [str(rng.randint(10**15, 10**16 - 1)) for _ in range(2000)]
    rate = sum(REDACTOR.redact_text(f"ref {v}") != f"ref {v}" for v in values) / len(values)
    print(f"false-positive rate bare 16-digit numbers in text: {rate:.2%}")
    assert rate < 0.08
    assert all(REDACTOR.redact_event({"payment_ref_id": f"pr_{v}"})["payment_ref_id"] == f"pr_{v}" for v in values)


@pytest.mark.parametrize("card", TEST_CARDS)
def test_every_published_test_card_is_caught(card: str) -> None:
    """The major networks' test card numbers are all masked (no miss from the IIN ranges)."""
    assert f"card ****{card[-4:]}" == REDACTOR.redact_text(f"card {card}")


@pytest.mark.parametrize(
    "number",
    ["2000000000000006", "3100000000000003", "5900000000000000", "6900000000000008", "378282246310005123"],
    ids=["2-outside-mir-mc", "3-outside-diners-jcb-amex", "59-no-network", "69-no-network", "amex-prefix-18-digits"],
)
def test_luhn_valid_numbers_outside_card_ranges_are_kept(number: str) -> None:
    """A number whose prefix or length no card network uses stays as it is, Luhn-valid or not."""
    assert f"ref {number}" == REDACTOR.redact_text(f"ref {number}")
