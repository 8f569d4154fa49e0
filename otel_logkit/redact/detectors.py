"""Value detectors: the patterns that find secrets in any string, whatever its key, and their masks.

Each :class:`Detector` is data (a regex, a mask, an optional validator). A :class:`Redactor`
combines all of them into one compiled alternation, so that a clean string costs one ``search``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from otel_logkit.redact.text import REDACTED

Mask = str | Callable[[str], str]
"""A fixed replacement, or a function from the matched text to its replacement."""


@dataclass(frozen=True, slots=True)
class Detector:
    """A pattern that finds one kind of secret in free text, and how to mask it.

    Args:
        name: a short identifier, e.g. ``card``; unique among the detectors of one redactor.
        pattern: a regular expression (no named groups); matched case-sensitively unless it
            carries its own inline flags such as ``(?i:...)``.
        mask: the replacement text, or a function of the matched text returning it. A mask
            must never contain the secret itself.
        validate: an optional check of the matched text; a match it rejects is kept as is
            (e.g. a digit run that fails the Luhn check is not a card).
        triggers: literal substrings of which one must occur for the pattern to run at all
            (a cheap ``in`` test that keeps clean strings off the regex engine); empty: always.
        keywords: lower-case substrings of which one must occur in the lower-cased text.
        min_digits: the pattern only runs on strings holding at least this many digits.
    """

    name: str
    pattern: str
    mask: Mask = REDACTED
    validate: Callable[[str], bool] | None = None
    triggers: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    min_digits: int = 0

    def apply(self, text: str) -> str:
        """Return the mask for ``text``, or ``text`` itself when the validator rejects it."""
        if self.validate is not None and not self.validate(text):
            return text
        return self.mask if isinstance(self.mask, str) else self.mask(text)


_NON_DIGITS = bytes(i for i in range(256) if not 48 <= i <= 57)


def digits_of(text: str) -> str:
    """Keep only the ASCII digits of ``text`` (UTF-8 multi-byte sequences hold no ASCII bytes)."""
    return text.encode("utf-8", "surrogatepass").translate(None, _NON_DIGITS).decode("ascii")


def count_digits(text: str) -> int:
    """How many ASCII digits ``text`` holds (``bytes.translate`` in C: ~3x a regex or count loop)."""
    return len(text.encode("utf-8", "surrogatepass").translate(None, _NON_DIGITS))


def any_in(needles: tuple[str, ...], haystack: str) -> bool:
    """Whether any of ``needles`` occurs in ``haystack`` (a plain loop: the hot path avoids any())."""
    for needle in needles:  # noqa: SIM110 - a generator costs more than the search itself here
        if needle in haystack:
            return True
    return False


def luhn_valid(number: str) -> bool:
    """Tell whether a string of digits passes the Luhn checksum used by payment cards."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    """A payment card: 13-19 digits (spaces or dashes allowed), a card-network prefix, Luhn-valid."""
    digits = digits_of(text)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def mask_card(text: str) -> str:
    """``4242 4242 4242 4242`` -> ``****4242``: the last four digits are what support asks for."""
    digits = digits_of(text)
    return "****" + digits[-4:] if len(digits) >= 8 else REDACTED


def is_phone_number(text: str) -> bool:
    """8-15 digits, the length range of E.164 numbers and of local numbers with an area code."""
    return 8 <= len(digits_of(text)) <= 15


def mask_phone(text: str) -> str:
    """``+1 555 010 0123`` -> ``*******0123``: one star per hidden digit, the last four kept."""
    digits = digits_of(text)
    if len(digits) < 6:
        return REDACTED
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_email(text: str) -> str:
    """``jane.doe@example.com`` -> ``***@example.com``: the domain helps debugging, the user is hidden."""
    _, at, domain = text.replace("%40", "@").rpartition("@")
    return "***@" + domain if at and domain else REDACTED


def _mask_bearer(text: str) -> str:
    scheme = re.split(r"\s+|\+|%20", text, maxsplit=1)[0]
    return f"{scheme} {REDACTED}"


# Free-text "key=value" / "key: value" pairs whose key names a secret. Long words match inside a
# longer key (client_secret, accessToken); short ones must start a key segment (user_pin, not
# shipping). Only the key's tail is matched: a leading [\w]* would make the search quadratic.
_KV_LONG = r"password|passwd|secret|token|api[_-]?key|apikey|authorization|credential|cookie"
_KV_SHORT = r"pwd|cvv2?|cvc|otp|pin|verification[_-]?code|security[_-]?code|card(?:[_-]?number)?|pan"
_KV_VALUE = (
    r"\[REDACTED\]"  # already masked: matched whole, so masking twice changes nothing
    r"|(?i:bearer|basic|digest|token)\s+[^\s\"',;&]+"
    r"|\"(?:[^\"\\\n]|\\.){0,512}\""
    r"|\"(?:[^\"\\\n]|\\.){0,512}$"  # a quoted value cut by a truncation
    r"|'[^'\n]{0,512}'"
    r"|[^\s&,;}\])\"']+"
)


KV_KEYWORDS: tuple[str, ...] = (
    "password", "passwd", "secret", "token", "api", "authorization", "credential", "cookie",
    "pwd", "cvv", "cvc", "otp", "pin", "verification", "security", "card", "pan",
)  # fmt: skip
"""Lower-case words of which one must occur in a text for the key=value detector to run."""


def kv_pattern(extra_keys: Iterable[str] = ()) -> str:
    """The regex for secret ``key=value`` pairs in free text, with ``extra_keys`` added."""
    extra = "|".join(re.escape(key) for key in sorted(extra_keys, key=len, reverse=True))
    short = f"{_KV_SHORT}|{extra}" if extra else _KV_SHORT
    key = rf"(?i:(?:{_KV_LONG})|(?<![A-Za-z0-9])(?:{short})(?![A-Za-z]))[A-Za-z0-9_.\]\-]{{0,64}}"
    return rf"{key}[\"']?[ \t]{{0,8}}[:=][ \t]{{0,8}}(?:{_KV_VALUE})"


def _mask_kv(text: str) -> str:
    # Keep the key and separator ("api_key=", "\"password\": "), replace only the value.
    match = re.match(r"[^:=]*[:=][ \t]*[\"']?", text)
    head = match.group(0) if match else ""
    quote = head[-1] if head.endswith(('"', "'")) else ""
    return f"{head}{REDACTED}{quote}"


# Separators: spaces, dashes, and "+" (a space in a query string or form body).
_CARD = r"(?<![\w.+/-])[2-6](?:[ +-]?\d){12,18}(?![\w/]|[.+-]\d)"
_PHONE_E164 = r"(?<![\w+])\+[1-9](?:[ .-]?\(?\d\)?){7,14}(?![\w]|[.-]\d)"
_PHONE_LOCAL = (
    r"(?<![\w.+/:-])(?<!\d )"
    r"(?:(?:\(\d{2,5}\)[ .-]?|\d{2,5}[ .-])\d{3,4}[ .-]?\d{3,4}|0[1-9]\d{8,9})"
    r"(?![\w]|[ .:-]\d)"
)
_EMAIL = (
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}(?:@|%40)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z][A-Za-z0-9-]{0,23}[A-Za-z0-9]"
)
_JWT = r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"
_BEARER = r"(?i:\bbearer)(?:\s+|\+|%20)[A-Za-z0-9\-._~+/]{8,}=*"
# Free-text "phone=..." pairs (query strings, URLs, exception text): the same keys as in dicts.
_PHONE_PAIR = (
    r"(?i:(?<![A-Za-z0-9])(?:phone|mobile|msisdn|tel)[A-Za-z0-9_.\]\-]{0,32})[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?"
    r"(?:\+|%2B)?\(?\d(?:[ .()+-]?\d){5,18}"
)
_PHONE_PAIR_KEYWORDS = ("phone", "mobile", "msisdn", "tel")


def _mask_phone_pair(text: str) -> str:
    match = re.match(r"[^:=]*[:=][ \t]*[\"']?", text)
    head = match.group(0) if match else ""
    return head + mask_phone(text[len(head) :])


def default_detectors(extra_keys: Iterable[str] = ()) -> tuple[Detector, ...]:
    """The built-in detectors, in priority order (earlier alternatives win at one position)."""
    extra = tuple(key.lower() for key in extra_keys)
    return (
        Detector("secret_pair", kv_pattern(extra), _mask_kv, triggers=("=", ":"), keywords=KV_KEYWORDS + extra),
        Detector("bearer", _BEARER, _mask_bearer, triggers=("earer", "EARER")),
        Detector("phone_pair", _PHONE_PAIR, _mask_phone_pair, triggers=("=", ":"), keywords=_PHONE_PAIR_KEYWORDS),
        Detector("jwt", _JWT, REDACTED, triggers=("eyJ",)),
        Detector("email", _EMAIL, mask_email, triggers=("@", "%40")),
        Detector("card", _CARD, mask_card, is_card_number, min_digits=13),
        Detector("phone", _PHONE_E164, mask_phone, is_phone_number, triggers=("+",), min_digits=8),
        Detector("local_phone", _PHONE_LOCAL, mask_phone, is_phone_number, min_digits=9),
    )


_registered: list[Detector] = []


def register_detector(
    name: str,
    pattern: str,
    mask: Mask = REDACTED,
    *,
    validate: Callable[[str], bool] | None = None,
    triggers: tuple[str, ...] = (),
) -> Detector:
    """Add a detector to every :class:`Redactor` created from now on.

    Args:
        name: a unique short identifier, e.g. ``iban``.
        pattern: a regular expression without named groups.
        mask: replacement text, or a function of the matched text returning it.
        validate: optional check; matches it rejects are kept.
        triggers: literal substrings of which one must occur for the pattern to run (speed).

    Raises:
        ValueError: when the pattern does not compile or the name is already used.
    """
    re.compile(pattern)
    builtin = {d.name for d in default_detectors()}
    if name in builtin or any(d.name == name for d in _registered):
        raise ValueError(f"a detector named {name!r} is already registered")
    detector = Detector(name, pattern, mask, validate, triggers)
    _registered.append(detector)
    return detector


def unregister_detector(name: str) -> None:
    """Remove a detector added by :func:`register_detector` (tests, plugins being unloaded)."""
    _registered[:] = [d for d in _registered if d.name != name]


def registered_detectors() -> tuple[Detector, ...]:
    """The detectors added through :func:`register_detector`, in registration order."""
    return tuple(_registered)


class CompiledDetector:
    """A detector with its pattern compiled and its gates ready for the scan loop."""

    __slots__ = ("detector", "keywords", "min_digits", "sub", "triggers")

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.sub = re.compile(detector.pattern).sub
        self.triggers = detector.triggers
        self.keywords = detector.keywords
        self.min_digits = detector.min_digits

    def replace(self, match: re.Match[str]) -> str:
        """The mask for one match (used as the ``re.sub`` callback)."""
        return self.detector.apply(match.group(0))
