"""The simulator's synthetic traffic: its distributions have the moments they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tara.rollout.traffic import (
    Rates,
    VariantProfile,
    draw,
    latency_distribution,
    rating_distribution,
)
from tara.telemetry.windows import WindowStats


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
    stats = WindowStats(latency=[round(p * 1_000_000) for p in probs])
    assert stats.latency_quantile(0.5) == pytest.approx(2.0, rel=0.25)
    assert stats.latency_quantile(0.95) == pytest.approx(2.0 * math.exp(1.645 * 0.5), rel=0.25)


def test_a_look_adds_the_expected_counts() -> None:
    profile = VariantProfile(error_rate=0.1, rating_rate=0.5)
    rows = 4000
    rates = Rates.of([profile] * rows)
    population = np.full(rows, 1000.0)
    look = draw(
        np.random.default_rng(3), np.full(rows, 100.0), rates, np.zeros(rows),
        np.full(rows, 1000, dtype=np.int64), population,
    )  # fmt: skip
    assert look.requests.mean() == pytest.approx(100, rel=0.01)
    assert look.errors.sum() / look.requests.sum() == pytest.approx(0.1, abs=0.003)
    answered = look.requests - look.errors
    assert (look.latency.sum(axis=1) == answered).all()
    ratings = look.ratings.sum(axis=0)
    assert ratings.sum() / answered.sum() == pytest.approx(0.5, abs=0.01)
    mean = (ratings * np.arange(1, 6)).sum() / ratings.sum()
    assert mean == pytest.approx(profile.rating_mean, abs=0.02)
    assert (look.new_students == look.requests).all()  # nobody had asked yet


def test_students_who_asked_before_are_not_new() -> None:
    rows = 4000
    rates = Rates.of([VariantProfile()] * rows)
    look = draw(
        np.random.default_rng(5), np.full(rows, 100.0), rates, np.zeros(rows),
        np.full(rows, 250, dtype=np.int64), np.full(rows, 1000.0),
    )  # fmt: skip
    assert look.new_students.sum() / look.requests.sum() == pytest.approx(0.25, abs=0.01)


def test_an_outage_adds_errors_on_top() -> None:
    rows = 2000
    rates = Rates.of([VariantProfile(error_rate=0.01)] * rows)
    look = draw(
        np.random.default_rng(4), np.full(rows, 100.0), rates, np.full(rows, 0.3),
        np.zeros(rows, dtype=np.int64), np.full(rows, 10.0),
    )  # fmt: skip
    assert look.errors.sum() / look.requests.sum() == pytest.approx(1 - 0.99 * 0.7, abs=0.005)
    assert look.new_students.sum() == 0  # everyone already seen
