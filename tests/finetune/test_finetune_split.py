"""The split: exact largest-remainder quotas per language×subject, whole clusters per split.

Content-level tables for :mod:`tara.finetune.split` (exact counts, exact assignments for small
fixed inputs, groups of 0–3 examples), hypothesis properties over any group sizes, and the
pipeline end to end: each combination's files hold exactly its quota, and a student's repeated
question never straddles two splits.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_finetune_samples import QUESTIONS, corpus, interaction, stream, varied_answer

from tara.finetune.config import FinetuneSettings, SplitSettings
from tara.finetune.prepare import prepare
from tara.finetune.split import (
    SPLITS,
    assign,
    fractions_of,
    quotas,
    split_group,
    too_small,
)

EIGHTY = (0.8, 0.1, 0.1)
RETYPED = (
    "What is Newton's second law?",
    "what is  newton's SECOND law",
    "Newton's second law: what is?",
    "WHAT is Newton's second law??",
)


# --- quotas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, (0, 0, 0)),
        (1, (1, 0, 0)),
        (2, (2, 0, 0)),
        (3, (3, 0, 0)),
        (5, (4, 1, 0)),  # 4 / 0.5 / 0.5: the tie goes to the earlier split
        (6, (5, 1, 0)),  # 4.8 / 0.6 / 0.6
        (7, (5, 1, 1)),  # 5.6 / 0.7 / 0.7
        (9, (7, 1, 1)),  # 7.2 / 0.9 / 0.9
        (10, (8, 1, 1)),
        (11, (9, 1, 1)),
        (14, (11, 2, 1)),  # 11.2 / 1.4 / 1.4
        (237, (189, 24, 24)),
        (251, (201, 25, 25)),
        (268, (214, 27, 27)),
    ],
)
def test_quotas_are_the_largest_remainder_shares(n: int, expected: tuple[int, int, int]) -> None:
    assert quotas(n, EIGHTY) == expected


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        (10, (0.7, 0.2, 0.1), (7, 2, 1)),
        (3, (1 / 3, 1 / 3, 1 / 3), (1, 1, 1)),
        (4, (1 / 3, 1 / 3, 1 / 3), (2, 1, 1)),
        (9, (0.9, 0.0, 0.1), (8, 0, 1)),  # 8.1 / 0 / 0.9
        (7, (1.0, 0.0, 0.0), (7, 0, 0)),
        (2, (0.5, 0.25, 0.25), (1, 1, 0)),
    ],
)
def test_quotas_for_other_fractions(
    n: int, fractions: tuple[float, float, float], expected: tuple[int, int, int]
) -> None:
    assert quotas(n, fractions) == expected


def test_fractions_come_from_the_settings() -> None:
    assert fractions_of(SplitSettings()) == (0.8, 0.1, 0.1)
    assert fractions_of(SplitSettings(train=0.7, validation=0.2, test=0.1)) == (0.7, 0.2, 0.1)


# --- assignment -----------------------------------------------------------------------


def test_singletons_fill_train_then_validation_then_test_in_key_order() -> None:
    keys = [50, 10, 40, 30, 20, 0, 90, 80, 70, 60]
    # Sorted by key: 0(5) 10(1) 20(4) 30(3) 40(2) 50(0) 60(9) 70(8) | 80(7) | 90(6).
    assert assign([1] * 10, keys, (8, 1, 1)) == [0, 0, 0, 0, 0, 0, 2, 1, 0, 0]


def test_equal_keys_keep_the_cluster_order() -> None:
    assert assign([1, 1, 1], [7, 7, 7], (1, 1, 1)) == [0, 1, 2]


def test_a_cluster_goes_whole_to_a_split_with_room_for_it() -> None:
    # The 3-cluster fits only train (room 6); the singletons then fill every quota exactly.
    result = assign([3, 1, 1, 1, 1, 1], [5, 1, 2, 3, 4, 6], (6, 1, 1))
    assert result == [0, 0, 0, 0, 1, 2]


def test_the_room_weighted_choice_follows_the_key() -> None:
    # Rooms (6, 2, 2) all fit a 2-cluster: key % 10 in [0, 6) → train, [6, 8) → validation,
    # [8, 10) → test (the key is shifted right by 20 bits first).
    def split_of(point: int) -> int:
        return assign([2, 1, 1, 1, 1, 1, 1, 1, 1], [point << 20, *range(8)], (6, 2, 2))[0]

    assert [split_of(p) for p in range(10)] == [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]


def test_larger_clusters_are_placed_first() -> None:
    # The 4-cluster is placed before the 2-cluster whatever their keys: 4 fits only train.
    result = assign([2, 4, 1, 1, 1, 1], [0, 1 << 40, 1, 2, 3, 4], (6, 2, 2))
    assert result[1] == 0
    assert sum(size for size, s in zip([2, 4, 1, 1, 1, 1], result, strict=True) if s == 0) == 6


def test_the_order_of_placement_decides_the_choice() -> None:
    # Largest first: the 4-cluster takes train, leaving rooms (2, 2, 2), and 7 % 6 = 1 puts the
    # 2-cluster in train too (placed first it would see rooms (6, 2, 2): 7 % 10 → validation).
    assert assign([2, 4, 1, 1, 1, 1], [7 << 20, 1 << 40, 1, 2, 3, 4], (6, 2, 2)) == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    # Equal sizes go in key order: B (key 7…) first, 7 % 8 → test; then A, 9 % 6 → train.
    keys = [(9 << 20) + 2, (7 << 20) + 1, 1, 2, 3, 4]
    assert assign([2, 2, 1, 1, 1, 1], keys, (4, 2, 2)) == [0, 2, 0, 0, 1, 1]


def test_a_cluster_that_fits_nowhere_overflows_the_roomiest_split() -> None:
    assert assign([5, 1], [0, 1], (4, 1, 1)) == [0, 1]
    assert assign([5, 1], [0, 1], (1, 4, 1)) == [1, 0]
    assert assign([5, 1], [0, 1], (2, 2, 2)) == [0, 1]  # a tie: the earlier split


def test_quotas_of_nothing() -> None:
    assert quotas(5, (0.0, 0.0, 0.0)) == (0, 0, 0)
    assert quotas(-1, EIGHTY) == (0, 0, 0)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_groups(n: int) -> None:
    plan = split_group([1] * n, list(range(n)), EIGHTY)
    assert plan.counts == quotas(n, EIGHTY)
    assert plan.quotas == plan.counts
    assert plan.exact
    assert plan.too_small == (n > 0)
    assert plan.clusters == n
    assert plan.largest_cluster == (1 if n else 0)


def test_a_group_plan_reports_its_clusters_and_exactness() -> None:
    plan = split_group([3, 1, 1, 1, 1, 1], [5, 1, 2, 3, 4, 6], (0.75, 0.125, 0.125))
    assert plan.quotas == (6, 1, 1)
    assert plan.counts == (6, 1, 1)
    assert plan.splits == (0, 0, 0, 0, 1, 2)
    assert plan.exact
    assert not plan.too_small
    assert (plan.clusters, plan.largest_cluster) == (6, 3)
    skewed = split_group([5, 1], [0, 1], (0.7, 0.15, 0.15))
    assert skewed.quotas == (4, 1, 1)
    assert skewed.counts == (5, 1, 0)
    assert not skewed.exact
    assert skewed.too_small


def test_too_small_means_a_split_with_a_share_got_nothing() -> None:
    assert too_small((5, 1, 0), EIGHTY)
    assert not too_small((5, 1, 1), EIGHTY)
    assert not too_small((5, 1, 0), (0.9, 0.1, 0.0))
    assert not too_small((0, 0, 0), EIGHTY)


def test_only_the_proportions_of_the_fractions_count() -> None:
    # One millionth is the smallest weight there is: it still takes every example.
    assert quotas(5, (0.000001, 0.0, 0.0)) == (5, 0, 0)
    assert quotas(3, (0.000001, 0.0, 0.000001)) == (2, 0, 1)  # 1.5 / 0 / 1.5: the earlier split


def test_keys_of_all_64_bits_order_the_singletons_exactly() -> None:
    # Half of the BLAKE2b keys are at or above 2**63: mixed with small ones, they must still
    # compare exactly (as floats 2**63 and 2**63 + 1 would be equal and keep the cluster order).
    keys = [2**63 + 1, 2**63, 5]
    assert assign([1, 1, 1], keys, (1, 1, 1)) == [2, 1, 0]
    assert assign([1, 1, 1, 1], [2**64 - 1, 2**64 - 2, 2**63, 0], (1, 1, 2)) == [2, 2, 1, 0]


def test_equal_keys_keep_the_cluster_order_in_a_large_group() -> None:
    # 48 singletons with only three distinct keys: within a key the earlier cluster goes first,
    # however many there are (a sort that is not stable reorders them past 16 or so).
    keys = [(i * 7) % 3 * 1000 for i in range(48)]
    keys = [keys[(i * 5) % 48] for i in range(48)]
    order = sorted(range(48), key=lambda i: (keys[i], i))
    expected = [0] * 48
    for position, i in enumerate(order):
        expected[i] = 0 if position < 20 else 1 if position < 35 else 2
    result = assign([1] * 48, keys, (20, 15, 13))
    assert result == expected
    assert [result.count(s) for s in range(3)] == [20, 15, 13]


def test_a_cluster_of_no_examples_takes_no_room() -> None:
    # Clusters are never empty in the pipeline; an empty one stays at train and counts nothing.
    assert assign([0, 1, 1], [0, 1, 2], (1, 1, 0)) == [0, 0, 1]
    assert assign([1, 0], [5, 0], (0, 1, 0)) == [1, 0]
    plan = split_group([0, 1], [0, 1], (0.0, 1.0, 0.0))
    assert plan.splits == (0, 1)
    assert plan.counts == (0, 1, 0)


def test_too_small_wants_a_count_for_every_fraction() -> None:
    with pytest.raises(ValueError, match="zip"):
        too_small((3, 1), EIGHTY)
    with pytest.raises(ValueError, match="zip"):
        too_small((3, 1, 1, 0), EIGHTY)


# --- properties -----------------------------------------------------------------------

_FRACTIONS = st.sampled_from([EIGHTY, (0.7, 0.2, 0.1), (0.9, 0.0, 0.1), (0.5, 0.25, 0.25)])


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 3000), fractions=_FRACTIONS, seed=st.integers(0, 2**32))
def test_singleton_groups_get_exactly_their_shares(
    n: int, fractions: tuple[float, float, float], seed: int
) -> None:
    keys = [(i * 0x9E3779B97F4A7C15 + seed) % 2**64 for i in range(n)]
    plan = split_group([1] * n, keys, fractions)
    assert sum(plan.counts) == n
    for count, fraction in zip(plan.counts, fractions, strict=True):
        assert abs(count - n * fraction) < 1
    assert plan.exact


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), max_size=400),
    fractions=_FRACTIONS,
    salt=st.integers(0, 2**64 - 1),
)
def test_clusters_never_straddle_splits_and_small_ones_keep_shares_exact(
    sizes: list[int], fractions: tuple[float, float, float], salt: int
) -> None:
    keys = [hash((salt, i)) % 2**64 for i in range(len(sizes))]
    result = assign(sizes, keys, quotas(sum(sizes), fractions))
    assert len(result) == len(sizes)  # one split per cluster: no cluster is cut
    counts = [0, 0, 0]
    for size, split in zip(sizes, result, strict=True):
        counts[split] += size
    plan = split_group(sizes, keys, fractions)
    assert tuple(counts) == plan.counts
    assert sum(counts) == sum(sizes)
    multi = sum(s for s in sizes if s > 1)
    shares = [q for q, f in zip(plan.quotas, fractions, strict=True) if f > 0]
    if multi <= min(shares, default=0):
        # Clusters that all fit in the smallest share always find room: exact.
        assert plan.exact, (sizes, plan)
    if plan.exact:
        assert plan.counts == plan.quotas


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 5), max_size=60), salt=st.integers(0, 2**32))
def test_the_assignment_does_not_depend_on_the_clusters_order(sizes: list[int], salt: int) -> None:
    keys = [hash((salt, i, s)) % 2**64 for i, s in enumerate(sizes)]
    forward = assign(sizes, keys, quotas(sum(sizes), EIGHTY))
    back = assign(sizes[::-1], keys[::-1], quotas(sum(sizes), EIGHTY))
    assert forward == back[::-1]


# --- the pipeline ---------------------------------------------------------------------


def _combos(manifest: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    combos = manifest["combinations"]
    assert isinstance(combos, list)
    return {(c["language"], c["subject"]): c for c in combos}


async def test_each_combination_gets_exactly_its_quota(tmp_path: Path) -> None:
    sizes = {("en", "math"): 237, ("en", "physics"): 251, ("hi", "chemistry"): 268}
    result = await prepare(stream(corpus(sizes)), FinetuneSettings(min_interactions=30), tmp_path)
    combos = _combos(result.manifest)
    expected = {
        ("en", "math"): (189, 24, 24),
        ("en", "physics"): (201, 25, 25),
        ("hi", "chemistry"): (214, 27, 27),
    }
    for combo, counts in expected.items():
        assert tuple(combos[combo]["written"][s] for s in SPLITS) == counts  # type: ignore[index]
    in_files: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    prompts = {"mathematics": "math", "physics": "physics", "chemistry": "chemistry"}
    for split in SPLITS:
        for line in (tmp_path / f"{split}.jsonl").read_text("utf-8").splitlines():
            system = json.loads(line)["messages"][0]["content"]
            language = "hi" if "Hindi" in system else "en"
            subject = next(v for k, v in prompts.items() if k in system)
            in_files[(language, subject)][split] += 1
    for combo, counts in expected.items():
        assert tuple(in_files[combo][s] for s in SPLITS) == counts


async def test_a_students_repeated_question_stays_in_one_split(tmp_path: Path) -> None:
    rng = random.Random(11)
    items = corpus({("en", "physics"): 200})
    retries = []
    for student in range(12):
        for attempt in range(4):
            # The same question retyped (case, spacing, punctuation, word order) and retried.
            question = RETYPED[attempt]
            retries.append(
                interaction(
                    f"s{student}-{attempt}",
                    language="en",
                    subject="physics",
                    question=question,
                    answer=varied_answer(rng, "en"),
                    student=f"student-{student}",
                )
            )
    result = await prepare(stream(items + retries), FinetuneSettings(min_interactions=30), tmp_path)
    where: dict[str, set[str]] = defaultdict(set)
    answers = {ix.answer: ix.request_id for ix in retries}
    for split in SPLITS:
        for line in (tmp_path / f"{split}.jsonl").read_text("utf-8").splitlines():
            answer = json.loads(line)["messages"][2]["content"]
            if answer in answers:
                where[answers[answer].split("-")[0]].add(split)
    assert len(where) == 12
    assert all(len(splits) == 1 for splits in where.values()), dict(where)
    combo = _combos(result.manifest)[("en", "physics")]
    assert tuple(combo["written"][s] for s in SPLITS) == (198, 25, 25)  # type: ignore[index]
    assert combo["split"]["largest_cluster"] == 4  # type: ignore[index]
    assert QUESTIONS["en"]  # the samples module is the one the corpus used


def _placement(directory: Path) -> dict[str, str]:
    """Which split each example's question went to."""
    out = {}
    for split in SPLITS:
        for line in (directory / f"{split}.jsonl").read_text("utf-8").splitlines():
            out[json.loads(line)["messages"][1]["content"]] = split
    return out


async def test_the_split_depends_on_the_seed_and_the_data_not_the_order(tmp_path: Path) -> None:
    items = corpus({("en", "math"): 120, ("hi", "physics"): 90})
    settings_ = FinetuneSettings(min_interactions=30)
    await prepare(stream(items), settings_, tmp_path / "a")
    await prepare(stream(items[::-1]), settings_, tmp_path / "b")
    reseeded = FinetuneSettings(min_interactions=30, split=SplitSettings(seed=9))
    await prepare(stream(items), reseeded, tmp_path / "c")
    first = _placement(tmp_path / "a")
    assert len(first) == 210
    assert _placement(tmp_path / "b") == first
    other = _placement(tmp_path / "c")
    assert sum(other[q] != first[q] for q in first) > 20
    assert Counter(other.values()) == Counter(first.values())  # the same exact quotas
