"""Cultural rules: lexicon terms that must not appear, and answers students flagged.

The lexicon (syntax and intent in ``data/cultural_lexicon.txt``) compiles to
two regular expressions over case-folded text: one
alternation of every literal term, longest first, and one of the ``re:``
patterns. Literal matches are then checked for word boundaries in Python,
because ``\\b`` treats Devanagari and Tamil vowel signs as non-word
characters and would cut words in the middle.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

CULTURAL_LEXICON = "cultural_lexicon"
CULTURAL_TAG = "cultural_tag"


class LexiconError(ValueError):
    """A lexicon entry cannot be used; the message names the line."""


def _wordish(ch: str) -> bool:
    # Indic blocks (U+0900–U+0DFF) include the combining vowel signs.
    return ch.isalnum() or ch == "_" or "\u0900" <= ch <= "\u0dff"


# Devanagari letters with nukta exist precomposed (U+0958–U+095F) and as letter +
# U+093C; NFC picks the second. Texts are not normalised (it costs more than
# all the rules together), so each term is compiled in every spelling instead.
_NUKTA = {
    "\u0915\u093c": "\u0958",
    "\u0916\u093c": "\u0959",
    "\u0917\u093c": "\u095a",
    "\u091c\u093c": "\u095b",
    "\u0921\u093c": "\u095c",
    "\u0922\u093c": "\u095d",
    "\u092b\u093c": "\u095e",
    "\u092f\u093c": "\u095f",
}


def spellings(term: str) -> set[str]:
    """A term's case-folded spellings: NFC, NFD, and with precomposed nukta letters."""
    nfc = unicodedata.normalize("NFC", term).casefold()
    composed = nfc
    for pair, single in _NUKTA.items():
        composed = composed.replace(pair, single)
    return {nfc, unicodedata.normalize("NFD", nfc), composed}


@dataclass(frozen=True, slots=True)
class Lexicon:
    """A compiled lexicon; :meth:`find` names the first entry found in a text."""

    literals: re.Pattern[str] | None
    prefixes: frozenset[str]
    """Literal terms that may be followed by more letters (``word*`` entries)."""
    patterns: re.Pattern[str] | None

    def find(self, text: str) -> str | None:
        """The first lexicon entry in ``text`` (already case-folded), or ``None``."""
        if self.literals is not None:
            for m in self.literals.finditer(text):
                start, end = m.span()
                if start > 0 and _wordish(text[start - 1]):
                    continue
                if m.group() in self.prefixes or end == len(text) or not _wordish(text[end]):
                    return m.group()
        if self.patterns is not None:
            found = self.patterns.search(text)
            if found is not None:
                return found.group()
        return None


def parse_lexicon(lines: Iterable[str], origin: str = "lexicon") -> Lexicon:
    """Compile lexicon lines (see the default file for the syntax)."""
    words: set[str] = set()
    prefixes: set[str] = set()
    patterns: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("re:") else raw.strip()
        if not line:
            continue
        if line.startswith("re:"):
            pattern = line[3:]
            try:
                re.compile(pattern)
            except re.error as exc:
                msg = f"{origin}:{number}: invalid pattern {pattern!r}: {exc}"
                raise LexiconError(msg) from exc
            patterns.append(f"(?:{pattern})")
        elif line.endswith("*"):
            term = line[:-1].strip()
            if not term:
                msg = f"{origin}:{number}: empty prefix entry"
                raise LexiconError(msg)
            prefixes |= spellings(term)
        else:
            words |= spellings(line)
    terms = sorted(words | prefixes, key=lambda t: (-len(t), t))
    return Lexicon(
        literals=re.compile("|".join(map(re.escape, terms))) if terms else None,
        prefixes=frozenset(prefixes),
        patterns=re.compile("|".join(patterns)) if patterns else None,
    )


def default_lexicon_lines() -> list[str]:
    """Lines of the shipped, reviewed default lexicon."""
    text = resources.files("tara.finetune").joinpath("data/cultural_lexicon.txt").read_text("utf-8")
    return text.splitlines()


def load_lexicon(path: Path | None, extra: Iterable[str] = ()) -> Lexicon:
    """The lexicon from ``path`` (the shipped default when ``None``) plus ``extra`` entries."""
    if path is None:
        lines, origin = default_lexicon_lines(), "default lexicon"
    else:
        try:
            lines, origin = path.read_text("utf-8").splitlines(), str(path)
        except OSError as exc:
            msg = f"cannot read cultural lexicon {path}: {exc.strerror}"
            raise LexiconError(msg) from exc
    return parse_lexicon([*lines, *extra], origin)


def flagged_cultural(tags: Iterable[str], tag: str) -> bool:
    """Whether the student flagged the answer as culturally inappropriate."""
    return tag in tags
