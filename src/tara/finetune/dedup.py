"""Duplicate resolution at the end of a build: candidates confirmed, the best-rated kept.

While the log streams past, every screened example's exact fingerprint and
LSH band keys (:mod:`tara.finetune.rules_duplicates`) go into the Bloom
filter and a scratch file, and an example any of whose keys was (probably)
seen before is flagged. At the end, the keys of the flagged examples are
looked up in the scratch file (numpy, in chunks: memory stays flat), and
examples sharing a key are joined into candidate clusters (union-find).
Nothing is dropped on a candidate's word: in each cluster the examples are
taken best-rated first (then in log order) and one is dropped only when it
is an exact duplicate of an example already kept (same case-folded words)
or its word-bigram Jaccard similarity with one is at least
``near_duplicate_threshold`` — computed exactly on the bigrams, not
estimated. So no example is dropped whose similarity to every kept example
is below the threshold, and the example kept of a group of duplicates is
the best-rated one. A Bloom false positive or a chance band match costs
only a comparison.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
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
) -> dict[int, str | None]:
    """For one candidate cluster: ``None`` for each kept member, else the rule that drops it.

    Members are taken best-rated first, then by index (log order); each is kept
    unless an already kept member has the same words or a bigram Jaccard
    similarity of at least ``threshold`` with it.
    """
    word_of = words if callable(words) else words.__getitem__
    rating_of = ratings if callable(ratings) else ratings.__getitem__
    order = sorted(members, key=lambda m: (-rating_of(m), m))
    kept: list[tuple[Sequence[bytes], set[tuple[bytes, bytes]]]] = []
    verdicts: dict[int, str | None] = {}
    for m in order:
        w = word_of(m)
        if any(list(w) == list(k) for k, _ in kept):
            verdicts[m] = EXACT_DUPLICATE
            continue
        s = shingles(w)
        if any(jaccard(s, ks) >= threshold for _, ks in kept):
            verdicts[m] = NEAR_DUPLICATE
            continue
        kept.append((w, s))
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


def candidate_clusters(keys_path: Path, width: int, flagged: Sequence[int]) -> list[list[int]]:
    """Clusters (lists of example indexes, ascending) of examples sharing a key with a
    flagged one. ``keys_path`` holds ``width`` uint64 keys per example (0 = none)."""
    if not flagged or not keys_path.stat().st_size:
        return []
    keys = np.memmap(keys_path, dtype=np.uint64, mode="r").reshape(-1, width)
    wanted = np.unique(keys[np.asarray(flagged, dtype=np.int64)].ravel())
    wanted = wanted[wanted != 0]
    found_keys, found_rows = [], []
    for start in range(0, keys.shape[0], _CHUNK):
        block = np.asarray(keys[start : start + _CHUNK])
        rows, cols = np.nonzero(np.isin(block, wanted))
        found_keys.append(block[rows, cols])
        found_rows.append(rows.astype(np.int64) + start)
    del keys
    k, r = np.concatenate(found_keys), np.concatenate(found_rows)
    order = np.lexsort((r, k))
    k, r = k[order], r[order]
    uf = _UnionFind()
    same = np.flatnonzero(k[1:] == k[:-1])
    for i in same.tolist():
        a, b = int(r[i]), int(r[i + 1])
        if a != b:
            uf.union(a, b)
    clusters: dict[int, list[int]] = {}
    for x in sorted(uf.parent):
        clusters.setdefault(uf.find(x), []).append(x)
    return [c for c in clusters.values() if len(c) > 1]
