"""Language rule: the answer is written in the script of the language the student asked for.

Letters are counted on the UTF-8 bytes, which is cheap and exact: every
Devanagari code point (U+0900–U+097F) starts with ``E0 A4`` or ``E0 A5``,
every Tamil one (U+0B80–U+0BFF) with ``E0 AE`` or ``E0 AF``, and every code
point of U+0800–U+0FFF (all the Indic scripts) with ``E0``. ASCII letters
are what remains after deleting every other byte. Digits, punctuation and
symbols (×, ², →, Greek letters in formulas) are not counted at all, so a
formula costs only its Latin variable names.
"""

from __future__ import annotations

from dataclasses import dataclass

from tara.finetune.config import Script, ValidationSettings

LANGUAGE = "language"
ROMANISED_HINDI = "romanised_hindi"

_NOT_ASCII_LETTER = bytes(b for b in range(256) if not (65 <= b <= 90 or 97 <= b <= 122))
_PREFIXES: dict[Script, tuple[bytes, bytes]] = {
    "devanagari": (b"\xe0\xa4", b"\xe0\xa5"),
    "tamil": (b"\xe0\xae", b"\xe0\xaf"),
}

# Common Hindi function words as they are written in Latin letters. English
# prose almost never contains them, so their share of the words tells
# romanised Hindi from English.
_ROMAN_HINDI_WORDS = frozenset(
    [
        "hai",
        "hain",
        "tha",
        "thi",
        "ka",
        "ki",
        "ke",
        "ko",
        "se",
        "mein",
        "aur",
        "nahi",
        "nahin",
        "kya",
        "yeh",
        "ye",
        "woh",
        "wo",
        "hota",
        "hoti",
        "hote",
        "karte",
        "karta",
        "karti",
        "kaise",
        "kyun",
        "kyunki",
        "jab",
        "toh",
        "agar",
        "liye",
        "wala",
        "wali",
        "wale",
        "apne",
        "aap",
        "hum",
        "tum",
        "bhi",
        "sakte",
        "sakta",
        "sakti",
        "matlab",
        "jaise",
    ]
)
_ROMAN_HINDI_SHARE = 0.15


@dataclass(frozen=True, slots=True)
class ScriptCounts:
    """Letters of an answer by script."""

    target: int
    """Letters in the script asked for."""
    latin: int
    letters: int
    """Letters in Latin, Devanagari, Tamil and the other Indic scripts."""


def count_letters(text: str, script: Script) -> ScriptCounts:
    """Count the answer's letters, and those of them in ``script``."""
    raw = text.encode("utf-8", "surrogatepass")
    latin = len(raw.translate(None, _NOT_ASCII_LETTER))
    indic = raw.count(b"\xe0")
    if script == "latin":
        return ScriptCounts(target=latin, latin=latin, letters=latin + indic)
    first, second = _PREFIXES[script]
    target = raw.count(first) + raw.count(second)
    return ScriptCounts(target=target, latin=latin, letters=latin + indic)


def looks_romanised_hindi(text: str) -> bool:
    """Whether Latin-script text reads as Hindi (enough common Hindi function words)."""
    words = [w.strip(".,!?;:()\"'").lower() for w in text.split()]
    hits = sum(1 for w in words if w in _ROMAN_HINDI_WORDS)
    return hits >= _ROMAN_HINDI_SHARE * max(len(words), 1)


def check_language(answer: str, language: str, settings: ValidationSettings) -> str | None:
    """``None`` if the answer is in the language's script, else the failing rule's name.

    Languages without a script in the settings are not checked.
    """
    script = settings.scripts.get(language)
    if script is None:
        return None
    counts = count_letters(answer, script)
    if counts.letters == 0:
        return LANGUAGE
    threshold = settings.min_script_ratio
    if counts.target >= threshold * counts.letters:
        return None
    if script == "devanagari" and counts.latin >= threshold * counts.letters:
        if not looks_romanised_hindi(answer):
            return LANGUAGE
        return None if settings.romanised_hindi == "accept" else ROMANISED_HINDI
    return LANGUAGE
