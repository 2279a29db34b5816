"""Privacy rule: personal data in questions and answers is redacted (or the example dropped).

Patterns find the candidates; ``python-stdnum`` decides the identity numbers:

- Aadhaar: twelve ASCII digits, optionally grouped 4-4-4 by spaces or
  hyphens, that ``stdnum.in_.aadhaar`` accepts (first digit 2–9, not a
  palindrome, correct Verhoeff check digit) — so a random twelve-digit
  number in a sum is left alone nine times in ten;
- PAN: ``AAAAA9999A`` that ``stdnum.in_.pan`` accepts: the fourth letter must
  be a holder type (P person, C company, H HUF, F firm, A AOP, T trust, B BOI,
  L local authority, J artificial juridical person, G government, K krish)
  and the digits not ``0000``. A textbook example such as ``ABCDE1234F``
  (fourth letter ``D``) is not a PAN anyone holds and stays in the text;
- Indian mobile numbers: ``python-stdnum`` has no phone module, so a pattern:
  ``+91``/``0091``/``0`` prefix optional, ten digits starting 6–9, common spacings;
- e-mail addresses.

Digits are ASCII; cheap pre-checks (an ``@``, a long run of digits, four
digits then a capital) keep ordinary text off the expensive patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stdnum.in_ import aadhaar, pan

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
_PAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{5}[0-9]{4}[A-Z](?![A-Za-z0-9])")


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
    return aadhaar.is_valid(match.replace(" ", "").replace("-", ""))


def _pan_like(match: str) -> bool:
    return pan.is_valid(match)


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
        text = _sub(_PAN, "pan", text, found, _pan_like)
    return text, tuple(found)
