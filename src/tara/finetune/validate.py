"""Validation: the named rules a candidate must pass to become a training example.

Rules run in the order of :data:`RULES`, cheapest and most decisive first,
and an example is dropped by the first it breaks, so every dropped example
is counted under exactly one rule. Duplicate checks come last, among the
examples every other rule kept: :class:`Screener` computes their keys here,
and :mod:`tara.finetune.dedup` decides at the end of the build, when the
best-rated example of each group is known. Privacy in ``redact`` mode does
not drop: it rewrites the text and is counted under ``redactions``.
"""

from __future__ import annotations

import hashlib

from tara.finetune.config import ValidationSettings
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
    NearDuplicateSketch,
    exact_key,
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


Screening = tuple[str | None, str, str, tuple[str, ...], int, tuple[int, ...]]
"""``(rule, question, answer, redactions, exact key, band keys)``: every rule but the
duplicate ones, and the keys those need. A plain tuple because it is made for every
example, often in a worker process: screening needs no memory of other examples, so it
runs anywhere while only :meth:`Deduplicator.observe` runs in log order."""


def combination_id(language: str, subject: str) -> bytes:
    """Short stable id of a language×subject combination, for fingerprint keys."""
    return hashlib.blake2b(f"{language}\x1f{subject}".encode(), digest_size=8).digest()


class Screener:
    """The stateless rules (all but duplicates) for one settings and lexicon."""

    def __init__(self, settings: ValidationSettings, lexicon: Lexicon | None = None) -> None:
        self._settings = settings
        self._lexicon = lexicon or load_lexicon(settings.cultural_lexicon, settings.cultural_terms)
        self._sketch = NearDuplicateSketch(
            settings.near_duplicate_bands,
            settings.near_duplicate_rows,
            settings.near_duplicate_min_shingles,
        )
        self._ids: dict[tuple[str, str], bytes] = {}

    def screen(
        self,
        language: str,
        subject: str,
        question: str,
        answer: str,
        answer_tokens: int | None,
        tags: tuple[str, ...],
    ) -> Screening:
        """Apply the stateless rules to a candidate's fields; for a survivor, its keys too."""
        settings = self._settings
        if flagged_cultural(tags, settings.cultural_tag):
            return (CULTURAL_TAG, question, answer, (), 0, ())
        folded_answer = answer.casefold()
        rule = check_quality(answer, folded_answer, answer_tokens, settings) or check_language(
            answer, language, settings
        )
        if rule is not None:
            return (rule, question, answer, (), 0, ())
        # One string serves the lexicon (a single scan) and the duplicate fingerprints.
        folded = f"{question.casefold()}\n\x1e\n{folded_answer}"
        if self._lexicon.find(folded) is not None:
            return (CULTURAL_LEXICON, question, answer, (), 0, ())
        question, found_q = scrub(question)
        answer, found_a = scrub(answer)
        redactions = found_q + found_a
        if redactions:
            if settings.privacy == "drop":
                return (PRIVACY, question, answer, redactions, 0, ())
            # Duplicates are judged on the text that goes into the dataset.
            folded = f"{question.casefold()}\n\x1e\n{answer.casefold()}"
        combo = self._ids.get((language, subject))
        if combo is None:
            combo = self._ids[(language, subject)] = combination_id(language, subject)
        words = folded.encode("utf-8", "surrogatepass").split()
        bands = tuple(self._sketch.band_keys(combo, words))
        return (None, question, answer, redactions, exact_key(combo, words), bands)
