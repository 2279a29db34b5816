"""Quality rules: empty, truncated, refusing or overlong answers.

The log does not keep the upstream's finish reason, so truncation is
guessed: an answer is cut if it is very short, has an unclosed code fence,
ends on a joining character (``,`` ``:`` ``-`` ``(``), or its last line is a
sentence of several words that stops on a letter (no ``.``, ``।``, ``?``,
emoji or digit). Refusals are matched in English, Hindi and Tamil at the
start of the answer, where models put them.
"""

from __future__ import annotations

import re

from tara.finetune.config import ValidationSettings

EMPTY = "empty"
TRUNCATED = "truncated"
REFUSAL = "refusal"
TOO_LONG = "too_long"

_JOINERS = frozenset(",;:-–—([{/+=*&")

_REFUSAL = re.compile(
    "|".join(
        (
            # English (matched on case-folded text, apostrophes straight or curly).
            r"\bi\s+(?:can[’']?t|cannot|can\s+not|won[’']?t|am\s+(?:not\s+able|unable)"
            r"|am\s+not\s+allowed)\s+(?:to\s+)?(?:help|assist|answer|provide|discuss|do\s+that)",
            r"\bi[’']?m\s+(?:sorry|afraid),?\s+(?:but\s+)?i\s+(?:can[’']?t|cannot|am\s+unable)",
            r"\bi[’']?m\s+(?:not\s+able|unable)\s+to\s+(?:help|assist|answer|provide)",
            r"\bas\s+an\s+ai(?:\s+language\s+model)?\b",
            # Hindi: "मैं इसमें मदद नहीं कर सकती", "उत्तर नहीं दे सकता", "... में असमर्थ हूँ".
            r"(?:मदद|सहायता)\s+नहीं\s+कर\s+(?:सकती|सकता|सकते|पाऊँगी|पाऊंगी|पाऊँगा|पाऊंगा)",
            r"(?:जवाब|उत्तर)\s+नहीं\s+दे\s+(?:सकती|सकता|सकते|पाऊँगी|पाऊंगी)",
            r"(?:मदद\s+करने|सहायता\s+करने|जवाब\s+देने|उत्तर\s+देने)\s+में\s+असमर्थ",
            # Tamil: "உதவ முடியாது" (cannot help), "பதிலளிக்க முடியாது" (cannot answer).
            r"(?:உதவ|பதிலளிக்க|பதில்\s+(?:சொல்ல|அளிக்க)|விளக்க)\s+(?:என்னால்\s+)?முடியாது",
            r"என்னால்\s+(?:இதற்கு\s+|இதில்\s+)?(?:உதவ|பதிலளிக்க)\s+இயலாது",
        )
    )
)


# Every refusal pattern contains one of these; most answers contain none, and a
# substring test is far cheaper than running the alternation.
_REFUSAL_ANCHORS = (
    "help",
    "assist",
    "answer",
    "provide",
    "discuss",
    "do that",
    "as an ai",
    "नहीं",
    "असमर्थ",
    "முடியாது",
    "இயலாது",
)


def is_refusal(folded_head: str) -> bool:
    """Whether the (case-folded) start of an answer refuses to help."""
    return any(a in folded_head for a in _REFUSAL_ANCHORS) and (
        _REFUSAL.search(folded_head) is not None
    )


def estimate_tokens(text: str) -> int:
    """A conservative token count for text without a tokenizer: UTF-8 bytes / 3.

    English runs about four bytes per token and Devanagari or Tamil about
    three (one character), so this overestimates rather than lets a long
    answer through.
    """
    return len(text.encode("utf-8", "surrogatepass")) // 3 + 1


def _ends_mid_sentence(stripped: str, min_words: int) -> bool:
    last = stripped[-1]
    if last in _JOINERS:
        return True
    if not (last.isalpha() or "\u0900" <= last <= "\u0dff"):
        return False
    # Devanagari danda (।, ॥) sits inside the Indic block but ends a sentence.
    if last in "।॥":
        return False
    last_line = stripped.rsplit("\n", 1)[-1]
    return len(last_line.split()) >= min_words


def check_quality(
    answer: str, folded_answer: str, answer_tokens: int | None, settings: ValidationSettings
) -> str | None:
    """``None`` for a usable answer, else the failing rule's name.

    ``folded_answer`` is ``answer.casefold()``, computed once by the caller.
    """
    stripped = answer.strip()
    if not stripped:
        return EMPTY
    tokens = answer_tokens if answer_tokens is not None else estimate_tokens(answer)
    if tokens > settings.max_answer_tokens:
        return TOO_LONG
    if (
        len(stripped) < settings.min_answer_chars
        or stripped.count("```") % 2 == 1
        or _ends_mid_sentence(stripped, settings.truncation_min_words)
    ):
        return TRUNCATED
    if is_refusal(folded_answer[: settings.refusal_scan_chars]):
        return REFUSAL
    return None
