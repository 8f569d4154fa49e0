"""Card numbers for redaction tests and benchmarks: the networks' published test cards, and a Luhn helper."""

from __future__ import annotations

TEST_CARDS: tuple[str, ...] = (
    "4242424242424242",
    "4000056655665556",
    "4111111111111111",
    "4012888888881881",
    "4000002500001001",
    "5555555555554444",
    "2223003122003222",
    "5200828282828210",
    "5105105105105100",
    "378282246310005",
    "371449635398431",
    "6011111111111117",
    "6011000990139424",
    "6011981111111113",
    "6555900000604105",
    "3056930009020004",
    "36227206271667",
    "30569309025904",
    "38520000023237",
    "3566002020360505",
    "3530111333300000",
    "6200000000000005",
    "6200000000000047",
    "6205500000000000004",
    "5019717010103742",
    "6759649826438453",
    "6331101999990016",
)
"""Published test card numbers of Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro, Solo."""


def luhn_complete(partial: str) -> str:
    """``partial`` followed by the check digit that makes it Luhn-valid."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit = digit * 2 - 9 if digit * 2 > 9 else digit * 2
        total += digit
    return partial + str((10 - total % 10) % 10)
