"""Duplicate detection in fixed memory, the hash split, and the validator's rule order."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from test_finetune_samples import ANSWERS, QUESTIONS, REFUSALS, interaction, varied_answer

from tara.finetune.config import SplitSettings, ValidationSettings
from tara.finetune.extract import Candidate, ExtractFilter, extract
from tara.finetune.rules_duplicates import (
    EXACT_DUPLICATE,
    NEAR_DUPLICATE,
    BloomFilter,
    Deduplicator,
    NearDuplicateSketch,
    words_of,
)
from tara.finetune.split import SPLITS, Splitter
from tara.finetune.validate import Validator

COMBO = b"hi/physics"


def _dedup() -> Deduplicator:
    return Deduplicator(1 << 20, NearDuplicateSketch(bands=4, rows=8, min_shingles=12))


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
    assert dedup.check(COMBO, words_of(ANSWERS["en"])) is None
    respaced = "  " + ANSWERS["en"].upper().replace(" ", "   \n")
    assert dedup.check(COMBO, words_of(respaced)) == EXACT_DUPLICATE


@pytest.mark.parametrize("lang", ["hi", "ta", "en"])
def test_a_one_word_edit_is_a_near_duplicate(lang: str) -> None:
    dedup = _dedup()
    long_answer = ANSWERS[lang] + " " + ANSWERS[lang].replace("6", "60")
    assert dedup.check(COMBO, words_of(long_answer)) is None
    words = long_answer.split()
    words[5] = "नया" if lang == "hi" else "புதிய" if lang == "ta" else "new"
    assert dedup.check(COMBO, words_of(" ".join(words))) == NEAR_DUPLICATE


def test_distinct_answers_are_not_near_duplicates() -> None:
    dedup = _dedup()
    rng = random.Random(3)
    verdicts = Counter(
        dedup.check(COMBO, words_of(varied_answer(rng, lang, words=40)))
        for lang in ("hi", "ta", "en")
        for _ in range(300)
    )
    assert verdicts[None] >= 897, verdicts


def test_combinations_are_deduplicated_independently() -> None:
    dedup = _dedup()
    assert dedup.check(b"hi/physics", words_of(ANSWERS["hi"])) is None
    assert dedup.check(b"hi/math", words_of(ANSWERS["hi"])) is None
    assert dedup.check(b"hi/math", words_of(ANSWERS["hi"])) == EXACT_DUPLICATE


def test_short_texts_get_no_band_keys() -> None:
    sketch = NearDuplicateSketch(bands=4, rows=8, min_shingles=12)
    assert sketch.band_keys(COMBO, words_of("x = 2 है।")) == []
    assert 1 <= len(sketch.band_keys(COMBO, words_of(ANSWERS["ta"]))) <= 4


# --- split ----------------------------------------------------------------------------


def test_split_is_deterministic_for_a_seed_and_independent_of_order() -> None:
    ids = [f"req-{i}" for i in range(2000)]
    first = {i: Splitter(SplitSettings(seed=5)).assign(i) for i in ids}
    again = Splitter(SplitSettings(seed=5))
    assert {i: again.assign(i) for i in reversed(ids)} == first
    other = Splitter(SplitSettings(seed=6))
    assert sum(other.assign(i) != first[i] for i in ids) > 500


@pytest.mark.parametrize(
    "fractions", [(0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.9, 0.0, 0.1), (1.0, 0.0, 0.0)]
)
def test_split_proportions_hold_within_each_stratum(fractions: tuple[float, ...]) -> None:
    train, validation, test = fractions
    splitter = Splitter(SplitSettings(train=train, validation=validation, test=test, seed=1))
    n = 20_000
    for stratum in ("hi/math", "ta/physics", "en/chemistry"):
        counts = Counter(splitter.assign(f"{stratum}-{i}") for i in range(n))
        for split, fraction in zip(SPLITS, fractions, strict=True):
            # 4 standard deviations of a binomial share, and exactly zero for empty splits.
            tolerance = 4 * (fraction * (1 - fraction) / n) ** 0.5
            assert abs(counts[split] / n - fraction) <= tolerance, (stratum, split, counts)


def test_too_small_means_a_non_empty_split_got_nothing() -> None:
    splitter = Splitter(SplitSettings())
    assert splitter.too_small({"train": 5, "validation": 1, "test": 0})
    assert not splitter.too_small({"train": 5, "validation": 1, "test": 1})
    no_test = Splitter(SplitSettings(train=0.9, validation=0.1, test=0.0))
    assert not no_test.too_small({"train": 5, "validation": 1, "test": 0})


def test_split_fractions_must_add_up() -> None:
    with pytest.raises(ValueError, match="add up to 1"):
        SplitSettings(train=0.8, validation=0.1, test=0.2)


# --- validator ------------------------------------------------------------------------


def _candidate(**kwargs: object) -> Candidate:
    result = extract(interaction("r1", **kwargs), ExtractFilter())  # type: ignore[arg-type]
    assert isinstance(result, Candidate)
    return result


def test_validator_keeps_good_examples_and_names_the_first_rule_broken() -> None:
    v = Validator(ValidationSettings())
    assert v.check(_candidate(language="ta", answer=ANSWERS["ta"])).rule is None
    assert v.check(_candidate(language="ta", answer=ANSWERS["ta"])).rule == EXACT_DUPLICATE
    assert v.check(_candidate(tags=["cultural"])).rule == "cultural_tag"
    assert v.check(_candidate(answer=REFUSALS["hi"])).rule == "refusal"
    assert v.check(_candidate(answer=ANSWERS["en"])).rule == "language"
    bad = ANSWERS["hi"] + " पिताजी शराब लाए।"
    assert v.check(_candidate(answer=bad)).rule == "cultural_lexicon"
    flagged_question = _candidate(question="शराब कैसे बनती है?", answer=ANSWERS["hi"] + " ")
    assert v.check(flagged_question).rule == "cultural_lexicon"


def test_privacy_redacts_or_drops_by_setting() -> None:
    answer = ANSWERS["hi"] + " मुझे +91 98765 43210 पर कॉल करो।"
    question = QUESTIONS["hi"] + " मेरा ईमेल anu@example.com है।"
    redacting = Validator(ValidationSettings()).check(_candidate(question=question, answer=answer))
    assert redacting.rule is None
    assert redacting.redactions == ("email", "phone")
    assert "[PHONE]" in redacting.answer
    assert "98765" not in redacting.answer
    assert "[EMAIL]" in redacting.question
    assert "anu@" not in redacting.question
    dropping = Validator(ValidationSettings(privacy="drop"))
    assert dropping.check(_candidate(question=question, answer=answer)).rule == "privacy"
