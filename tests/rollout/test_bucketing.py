"""Sticky bucketing: properties (hypothesis), cross-process stability and the split it gives."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tara.rollout.bucketing import BUCKETS, bucket, in_canary, new_salt, percent_to_bp

# Any code point, lone surrogates included: st.text() leaves surrogates out, so they are
# drawn on their own as often as any other character.
_chars = st.one_of(st.characters(exclude_categories=()), st.integers(0xD800, 0xDFFF).map(chr))
ids = st.lists(_chars, max_size=40).map("".join)
salts = st.lists(_chars, max_size=80).map("".join)  # past BLAKE2b's 64-byte key on purpose
weights = st.integers(min_value=-5, max_value=BUCKETS + 5)

UNICODE_IDS = [
    "छात्र-४२",  # Devanagari
    "மாணவர்-7",  # Tamil
    "student-👩‍🎓",  # emoji ZWJ sequence
    "\u00e9",  # NFC
    "e\u0301",  # NFD: a different id, and that is fine (escaped: editors normalise)
    "\ud800-lone-surrogate",
    "",
]


@given(salt=salts, student=ids)
def test_bucket_is_in_range_and_repeatable(salt: str, student: str) -> None:
    b = bucket(salt, student)
    assert 0 <= b < BUCKETS
    assert bucket(salt, student) == b


@given(salt=salts, student=ids, w1=weights, w2=weights)
def test_raising_the_weight_only_adds_students(salt: str, student: str, w1: int, w2: int) -> None:
    low, high = sorted((w1, w2))
    if in_canary(salt, student, low):
        assert in_canary(salt, student, high)


@given(salt=salts, student=ids, weight=weights)
def test_in_canary_is_bucket_below_weight_clamped(salt: str, student: str, weight: int) -> None:
    expected = bucket(salt, student) < max(0, min(BUCKETS, weight))
    assert in_canary(salt, student, weight) is expected


@given(salt=salts, student=ids)
def test_zero_weight_is_nobody_and_full_weight_is_everybody(salt: str, student: str) -> None:
    assert not in_canary(salt, student, 0)
    assert in_canary(salt, student, BUCKETS)


@given(s1=salts, s2=salts)
def test_a_new_salt_draws_a_different_sample(s1: str, s2: str) -> None:
    if s1 == s2:
        return
    population = [f"s{i}" for i in range(400)]
    first = {s for s in population if in_canary(s1, s, BUCKETS // 2)}
    second = {s for s in population if in_canary(s2, s, BUCKETS // 2)}
    # Independent halves of 400 share ~100 students; equal sets would mean
    # the salt is ignored (e.g. truncated away).
    assert first != second
    assert len(first & second) < 160


def test_long_salts_with_a_common_prefix_differ() -> None:
    prefix = "r" * 64
    assert [bucket(prefix + "a", f"s{i}") for i in range(50)] != [
        bucket(prefix + "b", f"s{i}") for i in range(50)
    ]


_CHILD = (
    "import json, sys\n"
    "from tara.rollout.bucketing import bucket\n"
    "pairs = json.load(sys.stdin)\n"
    "json.dump([bucket(salt, sid) for salt, sid in pairs], sys.stdout)\n"
)


def _buckets_in_subprocess(pairs: Sequence[tuple[str, str]], hash_seed: str) -> list[int]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(pairs),  # ASCII escapes carry lone surrogates intact
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    )
    result: list[int] = json.loads(done.stdout)
    return result


def test_buckets_are_the_same_in_fresh_processes_with_other_hash_seeds() -> None:
    pairs = [
        (salt, sid)
        for salt in ("", "rollout-1", new_salt(), "सॉल्ट" * 20)
        for sid in [*UNICODE_IDS, *(f"student-{i}" for i in range(50))]
    ]
    here = [bucket(salt, sid) for salt, sid in pairs]
    assert _buckets_in_subprocess(pairs, "0") == here
    assert _buckets_in_subprocess(pairs, "4242") == here


@pytest.mark.parametrize("salt", ["rollout-a", "rollout-b", "0123456789abcdef0123456789abcdef"])
def test_100k_students_split_within_half_a_point_of_the_weight(salt: str) -> None:
    buckets = [bucket(salt, f"student-{i:06d}") for i in range(100_000)]
    for percent in (10, 25, 50):
        weight = percent_to_bp(percent)
        share = sum(b < weight for b in buckets) / len(buckets)
        assert share == pytest.approx(percent / 100, abs=0.005), (percent, share)


def test_unicode_ids_bucket_and_split_like_any_other() -> None:
    for sid in UNICODE_IDS:
        assert 0 <= bucket("salt", sid) < BUCKETS
    hindi = [f"छात्र-{i}" for i in range(20_000)]
    share = sum(in_canary("salt", s, 2500) for s in hindi) / len(hindi)
    assert share == pytest.approx(0.25, abs=0.015)


@pytest.mark.parametrize(
    ("percent", "bp"),
    [(0, 0), (10, 1000), (12.5, 1250), (33.333, 3333), (100, BUCKETS), (150, BUCKETS), (-1, 0)],
)
def test_percent_to_bp(percent: float, bp: int) -> None:
    assert percent_to_bp(percent) == bp


def test_new_salts_are_fresh() -> None:
    assert len({new_salt() for _ in range(100)}) == 100


def test_a_new_salt_is_128_random_bits_in_32_hex_digits() -> None:
    """Short enough to be the BLAKE2b key as it is (at most 64 bytes), as stored rollouts have."""
    for _ in range(20):
        assert re.fullmatch("[0-9a-f]{32}", new_salt())


GOLDEN = Path(__file__).with_name("bucket_golden.json")


def test_buckets_match_the_committed_golden_table() -> None:
    """A refactor of ``bucket`` must not move a single student (ids and salts around 64 bytes,
    non-ASCII, empty, a lone surrogate, two long salts sharing their first 64 bytes)."""
    rows = json.loads(GOLDEN.read_text(encoding="ascii"))["rows"]
    assert len(rows) == 262
    for row in rows:
        salt, student = row["salt"], row["student"]
        assert bucket(salt, student) == row["bucket"], (salt, student)
        for weight, inside in row["in_canary"]:
            assert in_canary(salt, student, weight) is inside, (salt, student, weight)


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _has_lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_the_golden_table_covers_the_edges() -> None:
    """What the table must hold for a changed hash, key or comparison to show in it."""
    rows = json.loads(GOLDEN.read_text(encoding="ascii"))["rows"]
    salts = {r["salt"] for r in rows}
    students = {r["student"] for r in rows}
    # Salts of 63, 64 (the largest used as the key as it is) and 65 bytes (hashed into the
    # key), ASCII, multi-byte and with a lone surrogate; ids around 64 bytes too.
    assert {63, 64, 65} <= {_utf8_size(s) for s in salts}
    assert {64, 65} <= {_utf8_size(s) for s in salts if _has_lone_surrogate(s)}
    assert {63, 64, 65} <= {_utf8_size(s) for s in students}
    assert len({s for s in salts if _utf8_size(s) > 64}) == 6
    assert any(_has_lone_surrogate(s) for s in salts)
    assert any(_has_lone_surrogate(s) for s in students)
    # NFC and NFD spellings are different ids and different salts.
    assert {"\u00e9", "e\u0301"} <= students
    assert {"caf\u00e9", "cafe\u0301"} <= salts
    # Buckets at both ends; weights at, just above and outside every bucket's edge.
    assert {0, BUCKETS - 1} <= {r["bucket"] for r in rows}
    for row in rows:
        weights = {w for w, _ in row["in_canary"]}
        assert {0, row["bucket"], row["bucket"] + 1, BUCKETS} <= weights
    assert {-1, BUCKETS + 1} <= {w for r in rows for w, _ in r["in_canary"]}


def test_a_salt_of_up_to_64_bytes_is_the_key_itself() -> None:
    """The docstring's promise: such salts map exactly as before long salts were hashed."""
    for salt in ("", "rollout-1", "a" * 64, "क" * 21 + "a", "a" * 61 + "\ud800"):
        assert _utf8_size(salt) <= 64
        key = salt.encode("utf-8", "surrogatepass")
        for student in ("student-1", "\udfff", "e\u0301"):
            raw = student.encode("utf-8", "surrogatepass")
            digest = hashlib.blake2b(raw, key=key, digest_size=8).digest()
            assert bucket(salt, student) == int.from_bytes(digest, "big") % BUCKETS


def test_more_salts_than_the_keyed_cache_holds_bucket_as_keying_each_call() -> None:
    salts = [f"salt-{i}" for i in range(150)]
    for _ in range(2):  # the second pass runs after the cache evicted the first salts
        for salt in salts:
            digest = hashlib.blake2b(b"student-7", key=salt.encode(), digest_size=8).digest()
            assert bucket(salt, "student-7") == int.from_bytes(digest, "big") % BUCKETS
