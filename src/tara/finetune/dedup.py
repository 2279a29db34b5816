"""Duplicate resolution at the end of a build: candidates confirmed, the best-rated kept.

While the log streams past, every screened example's exact fingerprint and
LSH band keys (:mod:`tara.finetune.rules_duplicates`) are appended to a
scratch file — no lookup on the way. At the end each column of keys is
sorted (numpy, 8 bytes an example at a time), and examples sharing a key
are joined into candidate clusters (union-find); a band key shared by more
than :data:`MAX_BAND_GROUP` examples belongs to a template every answer
repeats and nominates nothing (exact fingerprints always nominate).
Nothing is dropped on a candidate's word: in each cluster the examples are
taken best-rated first (then in log order) and one is dropped only when it
is an exact duplicate of an example already kept (same case-folded words)
or its word-bigram Jaccard similarity with a kept example it shares a key
with is at least ``near_duplicate_threshold`` — computed exactly on the
bigrams, not estimated. So no example is dropped whose similarity to every
kept example is below the threshold, and the example kept of a group of
duplicates is the best-rated one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tara.finetune.rules_duplicates import EXACT_DUPLICATE, NEAR_DUPLICATE

_CHUNK = 1 << 16
"""Examples whose keys are scanned at a time."""


def shingles(words: Sequence[bytes]) -> set[tuple[bytes, bytes]]:
    """The word bigrams of a text (its words as :func:`words_of` gives them)."""
    return set(itertools.pairwise(words))


def jaccard(a: set[tuple[bytes, bytes]], b: set[tuple[bytes, bytes]]) -> float:
    """``|a ∩ b| / |a ∪ b|``; 0 for two empty sets (texts of one word: only exact matches)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def keep_best(
    members: Iterable[int],
    words: Callable[[int], Sequence[bytes]] | Sequence[Sequence[bytes]],
    ratings: Callable[[int], int] | Sequence[int],
    threshold: float,
    keys: Callable[[int], Iterable[int]] | None = None,
) -> dict[int, str | None]:
    """For one candidate cluster: ``None`` for each kept member, else the rule that drops it.

    Members are taken best-rated first, then by index (log order); each is kept
    unless an already kept member has the same words or a bigram Jaccard
    similarity of at least ``threshold`` with it. With ``keys`` (a member's
    candidate keys), a member is compared only with the kept members it shares
    a key with — the LSH candidates — so a large cluster costs no more than
    its candidate pairs; without, with every kept member.
    """
    word_of = words if callable(words) else words.__getitem__
    rating_of = ratings if callable(ratings) else ratings.__getitem__
    order = sorted(members, key=lambda m: (-rating_of(m), m))
    exact: set[tuple[bytes, ...]] = set()
    kept: list[set[tuple[bytes, bytes]]] = []
    by_key: dict[int, list[int]] = {}
    verdicts: dict[int, str | None] = {}
    for m in order:
        w = tuple(word_of(m))
        if w in exact:
            verdicts[m] = EXACT_DUPLICATE
            continue
        s = shingles(w)
        mine = list(keys(m)) if keys is not None else None
        if mine is None:
            others: Iterable[int] = range(len(kept))
        else:
            others = {k for key in mine for k in by_key.get(key, ())}
        if any(jaccard(s, kept[k]) >= threshold for k in others):
            verdicts[m] = NEAR_DUPLICATE
            continue
        if mine is not None:
            for key in mine:
                by_key.setdefault(key, []).append(len(kept))
        exact.add(w)
        kept.append(s)
        verdicts[m] = None
    return verdicts


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


MAX_BAND_GROUP = 64
"""A band key shared by more examples than this is a template's (a fixed greeting, a
formula every answer repeats), not a sign of duplication: it nominates no candidates.
Exact fingerprints always do."""


@dataclass(slots=True)
class Candidates:
    """Clusters of examples that share a key with a flagged one, and each member's keys."""

    clusters: list[list[int]]
    keys: dict[int, list[int]]
    """The keys by which an example was nominated (its exact fingerprint, band keys)."""


def candidate_clusters(keys_path: Path, width: int) -> Candidates:
    """Clusters (lists of example indexes, ascending) of examples sharing a key.

    ``keys_path`` holds ``width`` uint64 keys per example (0 = none): the first
    is the exact fingerprint, the others are band keys. One column at a time is
    sorted (8 bytes an example), so memory stays small whatever the build.
    """
    if not keys_path.stat().st_size:
        return Candidates([], {})
    keys = np.memmap(keys_path, dtype=np.uint64, mode="r").reshape(-1, width)
    uf = _UnionFind()
    member_keys: dict[int, list[int]] = {}
    for column in range(width):
        values = np.array(keys[:, column])
        order = np.argsort(values, kind="stable")
        ranked = values[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        sizes = np.diff(np.r_[starts, ranked.size])
        useful = (sizes > 1) & (ranked[starts] != 0)
        if column:
            useful &= sizes <= MAX_BAND_GROUP
        for start, size in zip(starts[useful].tolist(), sizes[useful].tolist(), strict=True):
            rows = order[start : start + size].tolist()
            key = int(ranked[start])
            for row in rows:
                member_keys.setdefault(row, []).append(key)
                uf.union(rows[0], row)
    del keys
    clusters: dict[int, list[int]] = {}
    for x in sorted(uf.parent):
        clusters.setdefault(uf.find(x), []).append(x)
    return Candidates([c for c in clusters.values() if len(c) > 1], member_keys)
