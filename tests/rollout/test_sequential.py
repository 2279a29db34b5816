"""Anytime-valid confidence sequences: exact bounds, and coverage under continuous looks."""

from __future__ import annotations

import math
import random

import pytest

from tara.rollout.sequential import (
    normal_mixture_halfwidth,
    rate_bounds,
    rate_log_evidence,
    rate_lower,
    rate_upper,
)

ALPHA = 0.05


def _grid_bounds(s: float, n: float) -> tuple[float, float]:
    """The sequence found by brute force over a fine grid of rates."""
    inside = [
        p
        for p in (i / 20_000 for i in range(1, 20_000))
        if rate_log_evidence(s, n, p, 0.05, 20) < math.log(1 / ALPHA)
    ]
    return inside[0], inside[-1]


@pytest.mark.parametrize(
    ("s", "n"), [(0, 10), (3, 100), (40, 200), (10, 10), (2.5, 50), (500, 1000), (1, 5000)]
)
def test_bounds_match_brute_force(s: float, n: float) -> None:
    lower, upper = rate_bounds(s, n, ALPHA, 0.05, 20)
    grid_lower, grid_upper = _grid_bounds(s, n)
    assert lower == pytest.approx(grid_lower, abs=1e-4)
    assert upper == pytest.approx(grid_upper, abs=1e-4)


@pytest.mark.parametrize(
    ("s", "n", "expected"),
    [(0, 0, (0.0, 1.0)), (0, 50, (0.0, None)), (50, 50, (None, 1.0))],
)
def test_edges(s: float, n: float, expected: tuple[float | None, float | None]) -> None:
    lower, upper = rate_bounds(s, n, ALPHA, 0.05, 20)
    assert expected[0] is None or lower == expected[0]
    assert expected[1] is None or upper == expected[1]
    assert 0.0 <= lower <= s / max(n, 1) <= upper <= 1.0 or n == 0


def test_bounds_tighten_with_data_and_confidence() -> None:
    assert rate_upper(10, 1000, ALPHA, 0.05, 20) < rate_upper(1, 100, ALPHA, 0.05, 20)
    assert rate_lower(100, 1000, ALPHA, 0.05, 20) > rate_lower(10, 100, ALPHA, 0.05, 20)
    assert rate_upper(10, 1000, 0.01, 0.05, 20) > rate_upper(10, 1000, 0.2, 0.05, 20)


@pytest.mark.parametrize(
    ("p", "s", "n", "expected"),
    [(0.0, 1, 10, math.inf), (0.0, 0, 10, 0.0), (1.0, 9, 10, math.inf), (1.0, 10, 10, 0.0)],
)
def test_log_evidence_at_the_ends(p: float, s: float, n: float, expected: float) -> None:
    assert rate_log_evidence(s, n, p, 0.05, 20) == expected


def test_rate_sequence_covers_the_truth_at_every_look() -> None:
    """Looking after every 10 requests, the true rate leaves the sequence in <= alpha of runs."""
    rng = random.Random(7)
    p, misses, runs = 0.05, 0, 300
    for _ in range(runs):
        s = 0
        for n in range(1, 2001):
            s += rng.random() < p
            if n % 10 == 0:
                lower, upper = rate_bounds(s, n, ALPHA, 0.05, 20)
                if not lower <= p <= upper:
                    misses += 1
                    break
    assert misses / runs <= ALPHA


def test_normal_mixture_covers_a_gaussian_mean_at_every_look() -> None:
    rng = random.Random(11)
    misses, runs = 0, 300
    for _ in range(runs):
        total = 0.0
        for n in range(1, 1001):
            total += rng.gauss(0.0, 1.0)
            if abs(total / n) > normal_mixture_halfwidth(1.0 / n, ALPHA, 0.2):
                misses += 1
                break
    assert misses / runs <= ALPHA


@pytest.mark.parametrize(
    ("variance", "expected"),
    [
        (0.0, 0.0),
        (0.01, math.sqrt(2 * 0.01 * 0.05 / 0.04 * (math.log(20) + 0.5 * math.log(5)))),
    ],
)
def test_normal_mixture_halfwidth_formula(variance: float, expected: float) -> None:
    assert normal_mixture_halfwidth(variance, ALPHA, 0.2) == pytest.approx(expected)


def test_normal_mixture_halfwidth_shrinks_with_variance() -> None:
    widths = [normal_mixture_halfwidth(1.0 / n, ALPHA, 0.2) for n in (10, 100, 1000, 10_000)]
    assert widths == sorted(widths, reverse=True)
