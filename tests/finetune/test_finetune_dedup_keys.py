"""Duplicate candidates in fixed memory (exact fingerprints, LSH band keys) and the rule order."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from test_finetune_samples import ANSWERS, QUESTIONS, REFUSALS, interaction, varied_answer

from tara.finetune.config import ValidationSettings
from tara.finetune.extract import Candidate, ExtractFilter, extract
from tara.finetune.rules_duplicates import (
    BloomFilter,
    Deduplicator,
    NearDuplicateSketch,
    exact_key,
    words_of,
)
from tara.finetune.validate import Screener, Screening
from tara.finetune.validate import combination_id as _combination

COMBO = b"hi/physics"
SKETCH = NearDuplicateSketch(bands=8, rows=8, min_shingles=12)


class _Keys:
    """Keys of texts as the build computes them, observed in order."""

    def __init__(self) -> None:
        self.dedup = Deduplicator(1 << 20)

    def check(self, combination: bytes, words: list[bytes]) -> bool:
        exact = exact_key(combination, words)
        return self.dedup.observe((exact, *SKETCH.band_keys(combination, words)))


def _dedup() -> _Keys:
    return _Keys()


def test_bloom_filter_remembers_and_estimates_its_error() -> None:
    bloom = BloomFilter(1 << 16)
    rng = random.Random(1)
    keys = [rng.getrandbits(64) for _ in range(1000)]
    assert not any(bloom.add(k) for k in keys)
    assert all(k in bloom for k in keys)
    assert all(bloom.add(k) for k in keys)
    assert bloom.keys == 1000
    assert 0 < bloom.false_positive_rate() < 0.01
    unseen = [rng.getrandbits(64) for _ in range(1000)]
    assert sum(k in bloom for k in unseen) < 20


def test_exact_duplicates_ignore_case_and_spacing() -> None:
    dedup = _dedup()
    assert not dedup.check(COMBO, words_of(ANSWERS["en"]))
    respaced = "  " + ANSWERS["en"].upper().replace(" ", "   \n")
    assert exact_key(COMBO, words_of(respaced)) == exact_key(COMBO, words_of(ANSWERS["en"]))
    assert dedup.check(COMBO, words_of(respaced))


@pytest.mark.parametrize("lang", ["hi", "ta", "en"])
def test_a_one_word_edit_is_a_near_duplicate_candidate(lang: str) -> None:
    dedup = _dedup()
    long_answer = ANSWERS[lang] + " " + ANSWERS[lang].replace("6", "60")
    assert not dedup.check(COMBO, words_of(long_answer))
    words = long_answer.split()
    words[5] = "नया" if lang == "hi" else "புதிய" if lang == "ta" else "new"
    edited = words_of(" ".join(words))
    shared = set(SKETCH.band_keys(COMBO, edited)) & set(
        SKETCH.band_keys(COMBO, words_of(long_answer))
    )
    assert len(shared) >= 4  # one word spoils at most four of the eight bands
    assert dedup.check(COMBO, edited)


def test_distinct_answers_are_rarely_candidates() -> None:
    dedup = _dedup()
    rng = random.Random(3)
    flagged = Counter(
        dedup.check(COMBO, words_of(varied_answer(rng, lang, words=40)))
        for lang in ("hi", "ta", "en")
        for _ in range(300)
    )
    assert flagged[False] >= 890, flagged


def test_combinations_are_deduplicated_independently() -> None:
    dedup = _dedup()
    assert not dedup.check(b"hi/physics", words_of(ANSWERS["hi"]))
    assert not dedup.check(b"hi/math", words_of(ANSWERS["hi"]))
    assert dedup.check(b"hi/math", words_of(ANSWERS["hi"]))


def test_short_texts_get_no_band_keys() -> None:
    assert SKETCH.band_keys(COMBO, words_of("x = 2 है।")) == []
    assert 1 <= len(SKETCH.band_keys(COMBO, words_of(ANSWERS["ta"]))) <= 8


# --- validator ------------------------------------------------------------------------


def _candidate(**kwargs: object) -> Candidate:
    result = extract(interaction("r1", **kwargs), ExtractFilter())  # type: ignore[arg-type]
    assert isinstance(result, Candidate)
    return result


def _screen(screener: Screener, c: Candidate) -> Screening:
    return screener.screen(c.language, c.subject, c.question, c.answer, c.answer_tokens, c.tags)


class _Validator:
    def __init__(self, settings: ValidationSettings) -> None:
        self._screener = Screener(settings)

    def check(self, c: Candidate) -> Screening:
        return _screen(self._screener, c)


def test_screening_keeps_good_examples_and_names_the_first_rule_broken() -> None:
    v = _Validator(ValidationSettings())
    kept = v.check(_candidate(language="ta", answer=ANSWERS["ta"]))
    assert kept[0] is None
    assert kept[4] == v.check(_candidate(language="ta", answer=ANSWERS["ta"]))[4]  # same key
    assert v.check(_candidate(tags=["cultural"]))[0] == "cultural_tag"
    assert v.check(_candidate(answer=REFUSALS["hi"]))[0] == "refusal"
    assert v.check(_candidate(answer=ANSWERS["en"]))[0] == "language"
    bad = ANSWERS["hi"] + " पिताजी शराब लाए।"
    assert v.check(_candidate(answer=bad))[0] == "cultural_lexicon"
    flagged_question = _candidate(question="शराब कैसे बनती है?", answer=ANSWERS["hi"] + " ")
    assert v.check(flagged_question)[0] == "cultural_lexicon"


def test_privacy_redacts_or_drops_by_setting() -> None:
    answer = ANSWERS["hi"] + " मुझे +91 98765 43210 पर कॉल करो।"
    question = QUESTIONS["hi"] + " मेरा ईमेल anu@example.com है।"
    rule, q, a, redactions, exact, _ = _Validator(ValidationSettings()).check(
        _candidate(question=question, answer=answer)
    )
    assert rule is None
    assert redactions == ("email", "phone")
    assert "[PHONE]" in a
    assert "98765" not in a
    assert "[EMAIL]" in q
    assert "anu@" not in q
    # Duplicates are judged on the redacted text, the one that goes into the dataset.
    folded = f"{q.casefold()}\n\x1e\n{a.casefold()}".encode().split()
    assert exact == exact_key(_combination("hi", "physics"), folded)
    dropping = _Validator(ValidationSettings(privacy="drop"))
    assert dropping.check(_candidate(question=question, answer=answer))[0] == "privacy"
