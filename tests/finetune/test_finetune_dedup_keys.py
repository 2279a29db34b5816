"""Duplicate candidates (exact fingerprints, LSH band keys, their clusters) and the rule order."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from test_finetune_samples import ANSWERS, QUESTIONS, REFUSALS, interaction, varied_answer

from tara.finetune.config import ValidationSettings
from tara.finetune.dataset import Spool
from tara.finetune.dedup import MAX_BAND_GROUP, candidate_clusters
from tara.finetune.extract import Candidate, ExtractFilter, extract
from tara.finetune.rules_duplicates import NearDuplicateSketch, exact_key, words_of
from tara.finetune.validate import Screener, Screening
from tara.finetune.validate import combination_id as _combination

COMBO = b"hi/physics"
SKETCH = NearDuplicateSketch(bands=8, rows=8, min_shingles=12)


class _Keys:
    """Keys of texts as the build computes them; whether a text shares one with an earlier."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def check(self, combination: bytes, words: list[bytes]) -> bool:
        keys = {exact_key(combination, words), *SKETCH.band_keys(combination, words)} - {0}
        shared = bool(keys & self.seen)
        self.seen |= keys
        return shared


def _dedup() -> _Keys:
    return _Keys()


def test_examples_sharing_a_key_form_candidate_clusters(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 3)
    rows = [
        (1, 10, 20),  # 0: shares band 10 with 2
        (2, 11, 21),  # 1: alone
        (3, 10, 22),  # 2
        (4, 12, 0),  # 3: shares its exact key with 5, and nothing with 0 (0 is "no key")
        (5, 13, 0),  # 4: alone
        (4, 14, 23),  # 5
    ]
    for keys in rows:
        spool.write(b"{}\n", keys)
    template = 99  # a band every answer shares: it nominates nothing
    for i in range(MAX_BAND_GROUP + 1):
        spool.write(b"{}\n", (1000 + i, template, 0))
    for _ in range(MAX_BAND_GROUP + 1):
        spool.write(b"{}\n", (7, 0, 0))  # exact copies always do, however many
    spool.close()
    found = candidate_clusters(spool.keys_path, 3)
    copies = list(range(len(rows) + MAX_BAND_GROUP + 1, len(rows) + 2 * MAX_BAND_GROUP + 2))
    assert found.clusters == [[0, 2], [3, 5], copies]
    assert found.keys[0] == [10]
    assert found.keys[3] == [4]


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
    assert len(shared - {0}) >= 4  # one word spoils at most four of the eight bands
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
    keys = SKETCH.band_keys(COMBO, words_of(ANSWERS["ta"]))
    assert len(keys) == 8  # one per band, in band order, so the columns line up
    assert 1 <= sum(k != 0 for k in keys) <= 8


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
