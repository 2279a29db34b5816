"""Counts a build keeps for each language×subject combination, and its fate."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tara.finetune.split import SPLITS, GroupPlan

INCLUDED = "included"
BELOW_MIN_INTERACTIONS = "below_min_interactions"
TOO_SMALL_DROPPED = "too_small_to_split_dropped"
TOO_SMALL_IN_TRAIN = "too_small_to_split_kept_in_train"


@dataclass(slots=True)
class CombinationStats:
    """Counts for one language×subject combination."""

    language: str
    subject: str
    index: int
    """Order of first appearance in the log: how the build's arrays name the combination."""
    extracted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    kept: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    """Examples kept by every rule, by the split the exact plan gives them."""
    redacted_examples: int = 0
    redactions: Counter[str] = field(default_factory=Counter)
    status: str = ""
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    """Examples that went into each output file."""
    plan: GroupPlan | None = None
    """The exact split of the kept examples (quotas, clusters)."""
