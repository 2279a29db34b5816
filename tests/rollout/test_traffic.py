"""The simulator's synthetic traffic: its distributions have the moments they claim."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from tara.rollout.traffic import (
    LookSampler,
    Poisson,
    VariantProfile,
    latency_distribution,
    rating_distribution,
)
from tara.telemetry.windows import WindowStats


@pytest.mark.parametrize("mean", [0.0, 0.05, 3.0, 40.0, 700.0])
def test_poisson_has_its_mean_and_variance(mean: float) -> None:
    rng = random.Random(1)
    draw = Poisson(mean)
    xs = [draw.draw(rng) for _ in range(20_000)]
    tolerance = 5 * math.sqrt(mean / 20_000) + 1e-9
    assert statistics.fmean(xs) == pytest.approx(mean, abs=tolerance)
    assert statistics.pvariance(xs) == pytest.approx(mean, rel=0.1, abs=0.01)


@pytest.mark.parametrize("mean", [1.0, 2.5, 3.5, 4.0, 4.3, 5.0])
def test_rating_distribution_hits_its_mean(mean: float) -> None:
    probs = rating_distribution(mean, 1.0)
    assert sum(probs) == pytest.approx(1.0)
    assert sum((k + 1) * p for k, p in enumerate(probs)) == pytest.approx(mean, abs=1e-6)


@pytest.mark.parametrize("mean", [0.5, 5.5])
def test_rating_mean_must_be_a_rating(mean: float) -> None:
    with pytest.raises(ValueError, match=r"within 1\.\.5"):
        rating_distribution(mean, 1.0)


def test_latency_distribution_is_lognormal() -> None:
    probs = latency_distribution(2.0, 0.5)
    assert sum(probs) == pytest.approx(1.0)
    hist = [round(p * 1_000_000) for p in probs]
    stats = WindowStats(latency=hist)
    assert stats.latency_quantile(0.5) == pytest.approx(2.0, rel=0.25)
    assert stats.latency_quantile(0.95) == pytest.approx(2.0 * math.exp(1.645 * 0.5), rel=0.25)


def test_look_sampler_adds_the_expected_counts() -> None:
    profile = VariantProfile(error_rate=0.1, rating_rate=0.5, retry_rate=0.2)
    sampler, rng, stats = LookSampler(profile, 100.0), random.Random(3), WindowStats()
    total = sum(sampler.sample(rng, stats) for _ in range(400))
    assert total == stats.requests
    assert stats.requests == pytest.approx(40_000, rel=0.03)
    assert stats.error_rate == pytest.approx(0.1, abs=0.01)
    assert stats.rating_count == pytest.approx(0.45 * 40_000, rel=0.05)
    assert stats.rating_mean == pytest.approx(profile.rating_mean, abs=0.03)
    assert stats.user_retries == pytest.approx(0.2 * 40_000, rel=0.05)
    assert sum(stats.latency) == stats.answered == sum(stats.ttft)
    assert stats.tokens_per_answer == pytest.approx(profile.tokens_per_answer, abs=1)
    assert stats.ttft_quantile(0.5) < stats.latency_quantile(0.5)  # type: ignore[operator]
