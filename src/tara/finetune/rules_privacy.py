"""Privacy rule: personal data in questions and answers is redacted (or the example dropped).

Looked for: Indian mobile numbers (``+91``/``0`` prefix optional, ten digits
starting 6–9, common spacings), e-mail addresses, Aadhaar numbers (twelve
digits, first 2–9, optionally grouped 4-4-4, whose Verhoeff check digit is
right — so a random twelve-digit number in a sum is left alone nine times in
ten) and PAN ids (``AAAAA9999A`` with a valid holder-type letter). Digits
are ASCII; cheap pre-checks (an ``@``, a long run of digits, four digits then
a capital) keep ordinary text off the expensive patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PRIVACY = "privacy"

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "aadhaar": "[AADHAAR]",
    "phone": "[PHONE]",
    "pan": "[PAN]",
}

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_LONG_NUMBER = re.compile(r"[0-9][0-9 -]{8,}[0-9]")
"""Ten or more digits and separators: the least a phone or Aadhaar number needs."""
_PAN_HINT = re.compile(r"[0-9]{4}[A-Z]")
_ANY_HINT = re.compile(r"@|[0-9](?:[0-9 -]{8,}[0-9]|[0-9]{3}[A-Z])")
"""Any of the three pre-checks: one scan decides that most texts need none of the patterns."""
_AADHAAR = re.compile(r"(?<![0-9])[2-9][0-9]{3}([ -]?)[0-9]{4}\1[0-9]{4}(?![0-9])")
_PHONE = re.compile(
    r"(?<![0-9+])(?:(?:\+|00)91[ -]?|0)?"
    r"[6-9](?:[0-9]{4}[ -]?[0-9]{5}|[0-9]{2}[ -][0-9]{3}[ -][0-9]{4})(?![0-9])"
)
_PAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z](?![A-Za-z0-9])")

_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def _verhoeff(digits: str, offset: int) -> int:
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _D[check][_P[(i + offset) % 8][ord(ch) - 48]]
    return check


def verhoeff_valid(digits: str) -> bool:
    """Whether a string of ASCII digits ends in a correct Verhoeff check digit."""
    return _verhoeff(digits, 0) == 0


def verhoeff_check_digit(digits: str) -> str:
    """The Verhoeff check digit to append to ``digits``."""
    return str(_INV[_verhoeff(digits, 1)])


def _sub(
    pattern: re.Pattern[str], kind: str, text: str, found: list[str], keep: Callable[[str], bool]
) -> str:
    def replace(m: re.Match[str]) -> str:
        if not keep(m.group()):
            return m.group()
        found.append(kind)
        return PLACEHOLDERS[kind]

    return pattern.sub(replace, text)


def _aadhaar_like(match: str) -> bool:
    return verhoeff_valid(match.replace(" ", "").replace("-", ""))


def _always(_: str) -> bool:
    return True


def scrub(text: str) -> tuple[str, tuple[str, ...]]:
    """The text with personal data replaced by placeholders, and the kinds found."""
    if _ANY_HINT.search(text) is None:
        return text, ()
    found: list[str] = []
    if "@" in text:
        text = _sub(_EMAIL, "email", text, found, _always)
    if _LONG_NUMBER.search(text) is not None:
        text = _sub(_AADHAAR, "aadhaar", text, found, _aadhaar_like)
        text = _sub(_PHONE, "phone", text, found, _always)
    if _PAN_HINT.search(text) is not None:
        text = _sub(_PAN, "pan", text, found, _always)
    return text, tuple(found)
