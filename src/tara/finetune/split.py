"""Train/validation/test split, decided per example by a keyed hash of its request id.

Hashing (BLAKE2b keyed with the seed) rather than shuffling means the split
streams, needs no memory, and does not depend on the order or on what else
is in the log: an interaction that was in the test set of one build stays
there in the next build with the same seed, so later models are never
trained on earlier test questions. Applied within each language×subject
combination, every stratum gets the configured fractions up to binomial
noise; the report shows the fractions each combination actually got.
"""

from __future__ import annotations

import hashlib

from tara.finetune.config import SplitSettings

SPLITS: tuple[str, ...] = ("train", "validation", "test")

_SPACE = 1 << 64


class Splitter:
    """Assigns request ids to splits for one seed and set of fractions."""

    def __init__(self, settings: SplitSettings) -> None:
        self._key = settings.seed.to_bytes(16, "big", signed=True)
        train_end = round(settings.train * _SPACE)
        validation_end = round((settings.train + settings.validation) * _SPACE)
        self._bounds = (train_end, validation_end)
        self.fractions = {
            "train": settings.train,
            "validation": settings.validation,
            "test": settings.test,
        }

    def assign(self, request_id: str) -> str:
        """The split this request id belongs to."""
        digest = hashlib.blake2b(
            request_id.encode("utf-8", "surrogatepass"), digest_size=8, key=self._key
        ).digest()
        point = int.from_bytes(digest, "big")
        if point < self._bounds[0]:
            return "train"
        if point < self._bounds[1]:
            return "validation"
        return "test"

    def too_small(self, counts: dict[str, int]) -> bool:
        """Whether a combination left a split with a non-zero fraction empty."""
        return any(self.fractions[s] > 0 and counts.get(s, 0) == 0 for s in SPLITS)
