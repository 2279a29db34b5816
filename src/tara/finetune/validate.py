"""Validation: the named rules a candidate must pass to become a training example.

Rules run in the order of :data:`RULES`, cheapest and most decisive first,
and an example is dropped by the first it breaks, so every dropped example
is counted under exactly one rule. Duplicate checks come last so that only
examples that are otherwise good are remembered. Privacy in ``redact`` mode
does not drop: it rewrites the text and is counted under ``redactions``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tara.finetune.config import ValidationSettings
from tara.finetune.extract import Candidate
from tara.finetune.rules_cultural import (
    CULTURAL_LEXICON,
    CULTURAL_TAG,
    Lexicon,
    flagged_cultural,
    load_lexicon,
)
from tara.finetune.rules_duplicates import (
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    Deduplicator,
    NearDuplicateSketch,
)
from tara.finetune.rules_language import LANGUAGE, ROMANISED_HINDI, check_language
from tara.finetune.rules_privacy import PRIVACY, scrub
from tara.finetune.rules_quality import EMPTY, REFUSAL, TOO_LONG, TRUNCATED, check_quality

RULES: tuple[str, ...] = (
    CULTURAL_TAG,
    EMPTY,
    TOO_LONG,
    TRUNCATED,
    REFUSAL,
    LANGUAGE,
    ROMANISED_HINDI,
    CULTURAL_LEXICON,
    PRIVACY,
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
)
"""Every rule, in the order they are applied."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What validation made of one candidate."""

    rule: str | None
    """The rule that dropped it, or ``None`` when it is kept."""
    question: str
    answer: str
    """Texts as they go into the dataset (personal data redacted)."""
    redactions: tuple[str, ...] = ()
    """Kinds of personal data replaced by placeholders."""


def combination_id(language: str, subject: str) -> bytes:
    """Short stable id of a language×subject combination, for fingerprint keys."""
    return hashlib.blake2b(f"{language}\x1f{subject}".encode(), digest_size=8).digest()


class Validator:
    """Applies every rule; holds the only state, the duplicate memory, in fixed space."""

    def __init__(self, settings: ValidationSettings, lexicon: Lexicon | None = None) -> None:
        self._settings = settings
        self._lexicon = lexicon or load_lexicon(settings.cultural_lexicon, settings.cultural_terms)
        self.dedup = Deduplicator(
            settings.dedup_memory_mb * 1024 * 1024,
            NearDuplicateSketch(
                settings.near_duplicate_bands,
                settings.near_duplicate_rows,
                settings.near_duplicate_min_shingles,
            ),
        )
        self._ids: dict[tuple[str, str], bytes] = {}

    def check(self, c: Candidate) -> Verdict:
        """Run the rules over one candidate, remembering it if it is kept."""
        settings = self._settings
        question, answer = c.question, c.answer
        if flagged_cultural(c.tags, settings.cultural_tag):
            return Verdict(CULTURAL_TAG, question, answer)
        folded_answer = answer.casefold()
        rule = check_quality(answer, folded_answer, c.answer_tokens, settings) or check_language(
            answer, c.language, settings
        )
        if rule is not None:
            return Verdict(rule, question, answer)
        # One string serves the lexicon (a single scan) and the duplicate fingerprints.
        folded = f"{question.casefold()}\n\x1e\n{folded_answer}"
        if self._lexicon.find(folded) is not None:
            return Verdict(CULTURAL_LEXICON, question, answer)
        question, found_q = scrub(question)
        answer, found_a = scrub(answer)
        redactions = found_q + found_a
        if redactions and settings.privacy == "drop":
            return Verdict(PRIVACY, question, answer)
        combo = self._ids.get(c.combination)
        if combo is None:
            combo = self._ids[c.combination] = combination_id(c.language, c.subject)
        words = folded.encode("utf-8", "surrogatepass").split()
        return Verdict(self.dedup.check(combo, words), question, answer, redactions)
