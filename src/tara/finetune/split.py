"""Train/validation/test split: exact shares per language×subject, whole clusters per split.

Group, then stratify. Examples that would leak an answer from training into
the test split (a student's question, retyped or retried) form one
*cluster* (:mod:`tara.finetune.clusters`); a cluster goes whole to one split.
Within each language×subject combination the split is exact: the *quotas*
are the largest-remainder shares of the combination's kept examples (each
within one example of ``n × fraction``; a tie for the last examples goes to
the earlier split), and clusters are dealt to splits until every quota is
met:

1. clusters of two or more examples first, largest first (then by key): each
   goes to one of the splits that still have room for all of it, chosen by
   its key with odds proportional to that room; a cluster no split has room
   for goes to the one with the most room (that split overshoots, and the
   plan says so: ``exact`` is false);
2. then single examples in key order fill train, then validation, then test.

Keys are keyed hashes (seeded) of what a cluster *is*, not of where it was in
the log, so the split is the same for a given seed and dataset whatever the
order the examples came in, and differs between seeds. When the clusters of
two or more examples hold no more examples than the smallest share, every
quota is met exactly. A combination whose quotas leave a split with a
non-zero fraction empty is ``too_small`` (the pipeline drops it or keeps it
whole in train, by ``split.small_combinations``, and reports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tara.finetune.config import SplitSettings

SPLITS: tuple[str, ...] = ("train", "validation", "test")

_WEIGHT_SCALE = 1_000_000
"""Fractions become integer weights in millionths, so quotas are computed exactly."""
_CHOICE_SHIFT = 20
"""A cluster's key is shifted right this far before choosing its split (the low bits also
order equal-sized clusters)."""


def fractions_of(settings: SplitSettings) -> tuple[float, float, float]:
    """The ``(train, validation, test)`` fractions of the settings."""
    return (settings.train, settings.validation, settings.test)


def quotas(n: int, fractions: Sequence[float]) -> tuple[int, ...]:
    """Largest-remainder shares of ``n`` examples: they add up to ``n`` exactly."""
    weights = [round(f * _WEIGHT_SCALE) for f in fractions]
    total = sum(weights)
    if n <= 0 or total <= 0:
        return tuple(0 for _ in fractions)
    floors = [n * w // total for w in weights]
    remainders = [n * w % total for w in weights]
    left = n - sum(floors)
    # Largest remainder first; on a tie, the earlier split.
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        floors[i] += 1
    return tuple(floors)


def _choose(room: list[int], size: int, key: int) -> int:
    """The split a cluster of ``size`` goes to, given each split's room and its key."""
    fitting = [s for s in range(len(room)) if room[s] >= size]
    if not fitting:
        return max(range(len(room)), key=lambda s: (room[s], -s))
    point = (key >> _CHOICE_SHIFT) % sum(room[s] for s in fitting)
    for s in fitting:
        if point < room[s]:
            return s
        point -= room[s]
    raise AssertionError("unreachable: the point lies within the fitting rooms")


def assign(sizes: Sequence[int], keys: Sequence[int], shares: Sequence[int]) -> list[int]:
    """The split index of each cluster, given cluster sizes, keys and the quotas."""
    room = list(shares)
    result = [0] * len(sizes)
    multi = sorted(
        (i for i, size in enumerate(sizes) if size > 1), key=lambda i: (-sizes[i], keys[i], i)
    )
    for i in multi:
        s = _choose(room, sizes[i], keys[i])
        result[i] = s
        room[s] -= sizes[i]
    singles = np.array([i for i, size in enumerate(sizes) if size == 1], dtype=np.int64)
    if singles.size:
        order = singles[
            np.argsort(np.array([keys[i] for i in singles], dtype=np.uint64), kind="stable")
        ]
        start = 0
        for s, r in enumerate(room):
            if r > 0:
                for i in order[start : start + r].tolist():
                    result[i] = s
                start += r
    return result


def too_small(counts: Sequence[int], fractions: Sequence[float]) -> bool:
    """Whether a non-empty combination left a split with a non-zero fraction empty."""
    return sum(counts) > 0 and any(f > 0 and c == 0 for c, f in zip(counts, fractions, strict=True))


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """How one combination is split: the split of each cluster and what came of it."""

    splits: tuple[int, ...]
    """Split index per cluster, in the order the clusters were given."""
    quotas: tuple[int, ...]
    counts: tuple[int, ...]
    """Examples per split: equal to ``quotas`` when ``exact``."""
    clusters: int
    largest_cluster: int
    too_small: bool
    """Whether a split with a non-zero fraction got nothing (see :func:`too_small`)."""

    @property
    def exact(self) -> bool:
        """Whether every split got exactly its quota."""
        return self.counts == self.quotas


def split_group(sizes: Sequence[int], keys: Sequence[int], fractions: Sequence[float]) -> GroupPlan:
    """Split one combination's clusters (sizes and keys) by ``fractions``."""
    shares = quotas(sum(sizes), fractions)
    splits = assign(sizes, keys, shares)
    counts = [0] * len(shares)
    for size, s in zip(sizes, splits, strict=True):
        counts[s] += size
    return GroupPlan(
        splits=tuple(splits),
        quotas=shares,
        counts=tuple(counts),
        clusters=len(sizes),
        largest_cluster=max(sizes, default=0),
        too_small=too_small(counts, fractions),
    )
