"""False positives of card detection on values that are not cards, before and after IIN ranges.

A corpus of 100,000 generated values that are *not* card numbers but look numeric (epoch
milliseconds and nanoseconds, Luhn-valid order numbers, arbitrary 13-19 digit ids), each placed
in free text. "Luhn only" is the detector before network ranges (a 2-6 first digit and the Luhn
check); "IIN ranges" is the detector now (a card network's prefix and length, and Luhn). Also
checks that every published test card number of the major networks is still caught.

Run: ``.venv/bin/python bench/bench_card_false_positives.py``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_logkit.redact import Redactor
from otel_logkit.redact.detectors import luhn_valid
from tests.support.cards import TEST_CARDS, luhn_complete


def corpus(seed: int = 20261201, per_family: int = 25_000) -> dict[str, list[str]]:
    """Four families of non-card numbers, ``per_family`` each."""
    rng = random.Random(seed)
    now_ms = 1_764_547_200_000
    return {
        "epoch ms": [str(now_ms + rng.randint(-(10**11), 10**11)) for _ in range(per_family)],
        "epoch ns": [str(now_ms * 10**6 + rng.randint(0, 10**15)) for _ in range(per_family)],
        "Luhn-valid order numbers (16 digits, 2-6 first)": [
            luhn_complete(str(rng.randint(2 * 10**14, 7 * 10**14 - 1))) for _ in range(per_family)
        ],
        "arbitrary ids (13-19 digits)": [str(rng.randint(10**12, 10**19 - 1)) for _ in range(per_family)],
    }


def main() -> None:
    redactor = Redactor()
    print(f"{'family':52} {'Luhn only':>10} {'IIN ranges':>11}")
    total_before = total_after = count = 0
    for family, values in corpus().items():
        before = sum(value[0] in "23456" and luhn_valid(value) for value in values)
        after = sum(redactor.redact_text(f"order {v} shipped") != f"order {v} shipped" for v in values)
        total_before += before
        total_after += after
        count += len(values)
        print(f"{family:52} {before / len(values):>10.3%} {after / len(values):>11.3%}")
    print(f"{'all ' + str(count):52} {total_before / count:>10.3%} {total_after / count:>11.3%}")
    missed = [card for card in TEST_CARDS if redactor.redact_text(f"card {card}") == f"card {card}"]
    print(f"test cards caught: {len(TEST_CARDS) - len(missed)} of {len(TEST_CARDS)}; missed: {missed}")


if __name__ == "__main__":
    main()
