"""Near-duplicate removal: LSH candidates confirmed by exact word-bigram Jaccard, best kept.

Driven through the whole PREPARE phase: what reaches the files is what a trainer sees. The
similarity here is computed independently of the code under test, the way the docs define
it (word bigrams of the case-folded question and answer).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_finetune_samples import QUESTIONS, interaction, stream, varied_answer

from tara.finetune.config import FinetuneSettings, ValidationSettings
from tara.finetune.dedup import keep_best, shingles
from tara.finetune.prepare import prepare
from tara.finetune.rules_duplicates import words_of
from tara.telemetry.interactions import Interaction

SETTINGS = FinetuneSettings(min_interactions=10)


def _bigrams(question: str, answer: str) -> set[tuple[str, str]]:
    words = [*question.casefold().split(), "\x1e", *answer.casefold().split()]
    return set(itertools.pairwise(words))


def jaccard(a: Interaction, b: Interaction) -> float:
    """Word-bigram Jaccard similarity of two interactions' question and answer."""
    qa, qb = a.messages[-1]["content"], b.messages[-1]["content"]  # type: ignore[index]
    x, y = _bigrams(qa, a.answer or ""), _bigrams(qb, b.answer or "")
    return len(x & y) / len(x | y)


def _edit(rng: random.Random, answer: str, changes: int) -> str:
    words = answer.split()
    for i in rng.sample(range(len(words) - 1), changes):
        words[i] = f"{words[i]}{rng.randrange(10)}"
    return " ".join(words)


def _written_answers(directory: Path) -> list[str]:
    out = []
    for split in ("train", "validation", "test"):
        for line in (directory / f"{split}.jsonl").read_text("utf-8").splitlines():
            out.append(json.loads(line)["messages"][2]["content"])
    return out


def _question(i: int) -> str:
    return f"{QUESTIONS['en']} ({i})"


async def test_distinct_examples_survive_and_the_best_rated_near_duplicate_is_kept(
    tmp_path: Path,
) -> None:
    rng = random.Random(4)
    items: list[Interaction] = []
    distinct: list[Interaction] = []
    pairs: list[tuple[Interaction, Interaction]] = []
    for i in range(150):
        base = interaction(
            f"base-{i}",
            language="en",
            question=_question(i),
            answer=varied_answer(rng, "en", words=60),
            rating=4,
        )
        items.append(base)
        if i < 100:
            # Somewhat alike (similarity 0.5-0.7), but a different example: it must stay.
            for changes in range(6, 30):
                other = interaction(
                    f"alike-{i}",
                    language="en",
                    question=_question(1000 + i),
                    answer=_edit(random.Random(i * 100 + changes), base.answer or "", changes),
                    rating=4,
                )
                if 0.5 <= jaccard(base, other) < 0.7:
                    break
            distinct.append(other)
        else:
            # A near duplicate (similarity ≥ 0.9) that came later but was rated better.
            better = interaction(
                f"better-{i}",
                language="en",
                question=_question(i),
                answer=_edit(rng, base.answer or "", 1),
                rating=5,
            )
            assert jaccard(base, better) >= 0.9
            pairs.append((base, better))
    assert len(distinct) == 100
    assert all(0.5 <= max(jaccard(d, x) for x in items) < 0.7 for d in distinct)
    log = items + distinct + [better for _, better in pairs]
    result = await prepare(stream(log), SETTINGS, tmp_path)
    written = set(_written_answers(tmp_path))
    assert all(d.answer in written for d in distinct), "a distinct example was dropped"
    for base, better in pairs:
        assert better.answer in written
        assert base.answer not in written
    rules = result.manifest["rules"]
    assert rules["near_duplicate"] == 50  # type: ignore[index]
    assert rules["duplicate"] == 0  # type: ignore[index]


async def test_planted_near_duplicates_are_removed(tmp_path: Path) -> None:
    rng = random.Random(8)
    items: list[Interaction] = []
    planted = 0
    for i in range(300):
        answer = varied_answer(rng, "en", words=rng.randrange(25, 80))
        items.append(interaction(f"b-{i}", language="en", question=_question(i), answer=answer))
        copy = interaction(
            f"c-{i}", language="en", question=_question(i), answer=_edit(rng, answer, 1), rating=4
        )
        if jaccard(items[-1], copy) >= 0.9:
            items.append(copy)
            planted += 1
    assert planted >= 200
    result = await prepare(stream(items), SETTINGS, tmp_path)
    removed = result.manifest["rules"]["near_duplicate"]  # type: ignore[index]
    assert removed >= 0.98 * planted, (removed, planted)
    assert len(_written_answers(tmp_path)) == len(items) - removed


async def test_exact_duplicates_keep_the_best_rated(tmp_path: Path) -> None:
    rng = random.Random(2)
    items = [
        interaction(f"r-{i}", language="en", question=_question(i), answer=varied_answer(rng, "en"))
        for i in range(20)
    ]
    first = interaction(
        "dup-4", language="en", question="Same?", answer="Same answer, twice.", rating=4
    )
    items += [
        first,
        interaction(
            "dup-5", language="en", question="same?", answer="same  ANSWER, twice.", rating=5
        ),
    ]
    settings_ = FinetuneSettings(
        min_interactions=10, validation=ValidationSettings(min_answer_chars=5)
    )
    result = await prepare(stream(items), settings_, tmp_path)
    written = _written_answers(tmp_path)
    assert "same  ANSWER, twice." in written
    assert "Same answer, twice." not in written
    assert result.manifest["rules"]["duplicate"] == 1  # type: ignore[index]


# --- the greedy choice, as a property -------------------------------------------------

_WORDS = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=2, max_size=14)


def _j(x: frozenset[tuple[bytes, bytes]], y: frozenset[tuple[bytes, bytes]]) -> float:
    return len(x & y) / len(x | y) if x | y else 1.0


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(_WORDS, min_size=1, max_size=12),
    ratings=st.lists(st.integers(1, 5), min_size=12, max_size=12),
    threshold=st.sampled_from([0.5, 0.7, 0.8, 0.9]),
)
def test_keep_best_never_drops_an_example_unlike_every_kept_one(
    texts: list[list[str]], ratings: list[int], threshold: float
) -> None:
    words = [words_of(" ".join(t)) for t in texts]
    sets = [frozenset(shingles(w)) for w in words]
    members = list(range(len(texts)))
    verdicts = keep_best(members, words, ratings[: len(texts)], threshold)
    kept = [m for m in members if verdicts[m] is None]
    assert kept, "a cluster always keeps one example"
    first = min(members, key=lambda m: (-ratings[m], m))
    assert verdicts[first] is None  # the best-rated (then earliest) is always kept
    for m in members:
        if verdicts[m] is None:
            continue
        assert max(_j(sets[m], sets[k]) for k in kept) >= threshold or any(
            words[m] == words[k] for k in kept
        )
    for a in kept:
        for b in kept:
            if a != b:
                assert _j(sets[a], sets[b]) < threshold
