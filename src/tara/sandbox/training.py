"""The pretend training of a sandbox fine-tuning job, as pure functions.

A job's life is planned up front: :func:`plan_job` turns its data and
hyperparameters into a list of :class:`Milestone` at fractions of the
configured training time (files validated, queued, running, metrics every
few steps, succeeded). The route module only sleeps until each milestone
and applies it. The loss falls exponentially towards a floor, faster with
a higher learning-rate multiplier, with a little seeded noise; validation
loss sits a bit above it. The tuned model's quality is the base quality
plus a bounded gain that grows with the number of examples (and shrinks
when the job's metadata says the examples were poorly rated).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from tara.sandbox.config import FineTuningConfig

MAX_METRIC_EVENTS = 40
"""Metric events per job, whatever the number of steps (keeps memory and lists small)."""

AUTO_EPOCHS = 3
AUTO_LEARNING_RATE = 2.0

MilestoneKind = Literal["failed", "queued", "running", "metrics", "succeeded"]


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """Resolved hyperparameters (``"auto"`` already replaced)."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float

    def as_json(self) -> dict[str, Any]:
        """OpenAI's ``hyperparameters`` object."""
        return {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }


def resolve(raw: dict[str, Any], examples: int) -> Hyperparameters:
    """Replace ``"auto"`` or missing values with OpenAI-like choices for ``examples``."""

    def pick(key: str, auto: float) -> float:
        value = raw.get(key, "auto")
        return auto if value == "auto" else float(value)

    auto_batch = max(1, min(256, round(examples * 0.002)))
    return Hyperparameters(
        n_epochs=int(pick("n_epochs", AUTO_EPOCHS)),
        batch_size=int(pick("batch_size", auto_batch)),
        learning_rate_multiplier=pick("learning_rate_multiplier", AUTO_LEARNING_RATE),
    )


def total_steps(examples: int, hp: Hyperparameters) -> int:
    """Optimiser steps: batches per epoch times epochs (at least one)."""
    return max(1, math.ceil(examples / hp.batch_size) * hp.n_epochs)


@dataclass(frozen=True, slots=True)
class Milestone:
    """Something that happens to a job ``at`` this fraction of the training time."""

    at: float
    kind: MilestoneKind
    data: dict[str, Any] = field(default_factory=dict)


def _metric_steps(steps: int) -> list[int]:
    count = min(steps, MAX_METRIC_EVENTS)
    return sorted({max(1, round(steps * (i + 1) / count)) for i in range(count)})


def loss_points(
    rng: random.Random, steps: int, hp: Hyperparameters, tokens_per_step: float
) -> list[dict[str, Any]]:
    """Metric events' ``data``: step, losses, token accuracy and tokens trained so far."""
    start = rng.uniform(1.6, 2.2)
    floor = rng.uniform(0.25, 0.45)
    # A higher learning rate falls faster; 0.1 still gets most of the way in 3 epochs.
    rate = 3.0 * min(2.0, 0.6 + hp.learning_rate_multiplier)
    points = []
    for step in _metric_steps(steps):
        progress = step / steps
        train = floor + (start - floor) * math.exp(-rate * progress)
        train *= 1 + rng.uniform(-0.04, 0.04)
        valid = train * rng.uniform(1.03, 1.12)
        points.append(
            {
                "step": step,
                "total_steps": steps,
                "train_loss": round(train, 4),
                "valid_loss": round(valid, 4),
                "train_mean_token_accuracy": round(min(0.99, 1.0 - train / 2.6), 4),
                "trained_tokens": round(tokens_per_step * step),
            }
        )
    return points


def tuned_quality(
    base: float, config: FineTuningConfig, examples: int, mean_rating: float | None
) -> float:
    """Base quality plus a gain bounded by ``max_quality_gain``, never above 1."""
    gain = config.max_quality_gain * examples / (examples + config.half_gain_examples)
    if mean_rating is not None:
        # Ratings 3..5 map to 0..1: tuning on mediocre answers teaches little.
        gain *= min(1.0, max(0.0, (mean_rating - 3.0) / 2.0))
    return round(min(1.0, base + gain), 4)


def plan_job(
    rng: random.Random,
    problem: str | None,
    examples: int,
    tokens: int,
    hp: Hyperparameters,
) -> list[Milestone]:
    """The job's milestones in order; a ``problem`` with its files makes it fail early."""
    if problem is not None:
        return [Milestone(0.1, "failed", {"message": problem})]
    steps = total_steps(examples, hp)
    trained = tokens * hp.n_epochs
    points = loss_points(rng, steps, hp, trained / steps)
    plan = [Milestone(0.1, "queued"), Milestone(0.2, "running", {"total_steps": steps})]
    plan += [Milestone(0.2 + 0.75 * p["step"] / steps, "metrics", p) for p in points]
    plan.append(Milestone(1.0, "succeeded", {"trained_tokens": trained}))
    return plan
