"""Synthetic traffic for the simulator: what one look adds to each variant's stats.

A :class:`VariantProfile` says how a model behaves (error rate, lognormal
latency, rating distribution, rating rate). :class:`Arm` turns profiles into
per-rollout probabilities and draws one look of counts for thousands of
simulated rollouts at once (numpy arrays, one rollout per row).

Counts are Poisson: with Poisson traffic every counter (errors, each latency
bucket, each rating level) is an independent Poisson draw. Students are a
population of ``students`` hashed into the variants at the stage's weight
(as :func:`tara.rollout.bucketing.in_canary` does); each request comes from
one of its variant's students at random, so the distinct students a variant
has seen grow about as ``P (1 - exp(-requests / P))`` and its share of
requests follows its share of students, as in production.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tara.telemetry.windows import LATENCY_BOUNDS

Floats = NDArray[np.float64]
BUCKETS = len(LATENCY_BOUNDS) + 1


@dataclass(frozen=True, slots=True)
class VariantProfile:
    """How one model behaves, per request."""

    error_rate: float = 0.01
    latency_median: float = 2.0
    """Seconds; latency is lognormal around this."""
    latency_sigma: float = 0.5
    """Log-scale spread; p95 is ``median * exp(1.645 * sigma)``."""
    rating_mean: float = 4.0
    rating_spread: float = 1.0
    """Spread of the latent normal that is rounded into ratings 1..5."""
    rating_rate: float = 0.3
    """Share of answers that get rated."""


def rating_distribution(mean: float, spread: float) -> list[float]:
    """Probabilities of ratings 1..5 from a rounded normal whose mean is ``mean``."""
    if not 1.0 <= mean <= 5.0:
        msg = f"rating mean must be within 1..5, got {mean}"
        raise ValueError(msg)

    def dist(centre: float) -> list[float]:
        weights = [math.exp(-((k - centre) ** 2) / (2 * spread * spread)) for k in range(1, 6)]
        total = sum(weights)
        return [w / total for w in weights]

    low, high = -20.0, 26.0
    for _ in range(100):  # bisection on the latent centre: the mean rises with it
        mid = (low + high) / 2
        if sum((k + 1) * p for k, p in enumerate(dist(mid))) < mean:
            low = mid
        else:
            high = mid
    return dist((low + high) / 2)


def latency_distribution(median: float, sigma: float) -> list[float]:
    """Probability of each latency bucket (overflow last) for a lognormal latency."""
    mu = math.log(median)

    def cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2.0))))

    cdfs = [cdf(b) for b in LATENCY_BOUNDS]
    probs = [cdfs[0]] + [b - a for a, b in itertools.pairwise(cdfs)]
    return [*probs, 1.0 - cdfs[-1]]


@dataclass(frozen=True, slots=True)
class Rates:
    """A profile as per-request probabilities, one row per simulated rollout."""

    errors: Floats
    latency: Floats
    """Bucket probabilities of an answer's latency, ``(rows, BUCKETS)``."""
    ratings: Floats
    """Probability of each rating 1..5 for one answer, already times the rating rate."""

    @classmethod
    def of(cls, profiles: list[VariantProfile]) -> Rates:
        """The rates of each profile (profiles repeat, so each is worked out once)."""
        cache: dict[VariantProfile, tuple[list[float], list[float]]] = {}
        for p in profiles:
            if p not in cache:
                rated = [
                    p.rating_rate * x for x in rating_distribution(p.rating_mean, p.rating_spread)
                ]
                cache[p] = (latency_distribution(p.latency_median, p.latency_sigma), rated)
        return cls(
            np.array([p.error_rate for p in profiles]),
            np.array([cache[p][0] for p in profiles]),
            np.array([cache[p][1] for p in profiles]),
        )


@dataclass(slots=True)
class Look:
    """What one look added to one variant of every rollout."""

    requests: NDArray[np.int64]
    errors: NDArray[np.int64]
    latency: NDArray[np.int64]
    ratings: NDArray[np.int64]
    new_students: NDArray[np.int64]


def draw(
    rng: np.random.Generator,
    requests: Floats,
    rates: Rates,
    extra_errors: Floats,
    unseen: NDArray[np.int64],
    population: Floats,
) -> Look:
    """One look for one variant: ``requests`` expected per rollout, its ``rates``.

    ``extra_errors`` is the failure probability an upstream outage adds (both
    variants alike); ``unseen`` of the variant's ``population`` of students
    have not asked yet in this stage.
    """
    p_err = 1.0 - (1.0 - rates.errors) * (1.0 - extra_errors)
    answers = requests * (1.0 - p_err)
    errors = rng.poisson(requests * p_err)
    # Most buckets are empty for every rollout: draw only those that are not.
    used = np.nonzero(rates.latency.max(axis=0) > 1e-9)[0]
    latency = np.zeros(rates.latency.shape, dtype=np.int64)
    latency[:, used] = rng.poisson(answers[:, None] * rates.latency[:, used])
    ratings = rng.poisson(answers[:, None] * rates.ratings)
    total = errors + latency.sum(axis=1)
    # Each request comes from one of the variant's students at random: a new one with the
    # chance that its student has not asked yet (repeats within one look are negligible).
    fresh = np.clip(unseen / np.maximum(population, 1.0), 0.0, 1.0)
    new_students = np.minimum(rng.binomial(total, fresh), unseen)
    return Look(total, errors, latency, ratings, new_students)
