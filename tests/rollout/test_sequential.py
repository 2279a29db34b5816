"""Sequential tests: exact boundaries, mixtures, and their error rates under continuous looks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tara.rollout.sequential import (
    RateTest,
    horizon,
    mean_log_evidence,
    mean_margin,
    rate_log_evidence,
)


def _binomial_tail(c: int, n: int, p: float) -> float:
    """P(X >= c) for X ~ Binomial(n, p), summed exactly."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(c, n + 1))


FAIL = RateTest(0.05, 0.2, fail=True)
PASS = RateTest(0.05, 0.05, fail=False)


@pytest.mark.parametrize(
    ("n", "fail_at"),
    [(0, 1), (5, 6), (6, 4), (20, 5), (100, 10), (240, 18), (1000, 70)],
)
def test_fail_boundary_values(n: int, fail_at: int) -> None:
    assert FAIL.threshold(n) == fail_at


@pytest.mark.parametrize(("n", "pass_at"), [(0, -1), (60, -1), (100, 0), (1000, 31)])
def test_pass_boundary_values(n: int, pass_at: int) -> None:
    assert PASS.threshold(n) == pass_at


def test_a_fixed_look_never_rejects_more_often_than_the_level() -> None:
    """Every single look is a subset of the whole sequence: its own error is below alpha."""
    for n in (60, 100, 240, 1000):
        assert _binomial_tail(int(FAIL.threshold(n)), n, 0.05) <= FAIL.alpha


def test_rate_tests_hold_their_level_under_a_look_after_every_request() -> None:
    """At the limit, the walk crosses the failing boundary in at most alpha of runs, and the
    passing one (which tests the other side) too."""
    rng = np.random.default_rng(3)
    runs, steps = 4000, 3000
    fail_edge = FAIL.threshold(np.arange(steps + 1))
    pass_edge = PASS.threshold(np.arange(steps + 1))
    events = np.zeros(runs)
    failed = np.zeros(runs, dtype=bool)
    passed = np.zeros(runs, dtype=bool)
    for n in range(1, steps + 1):
        events += rng.random(runs) < 0.05
        failed |= events >= fail_edge[n]
        passed |= events <= pass_edge[n]
    assert failed.mean() <= FAIL.alpha
    assert passed.mean() <= PASS.alpha


def test_the_boundary_continues_past_the_horizon() -> None:
    cap = horizon(0.05)
    inside, beyond, far = FAIL.threshold([cap, cap + 1, 10 * cap])
    assert inside < beyond < far
    assert beyond / (cap + 1) > 0.05
    assert 0.05 < far / (10 * cap) < 0.06  # the mixture: slower, but valid for ever
    low, high = PASS.threshold([cap + 1, 10 * cap])
    assert low < high < 0.05 * 10 * cap


@pytest.mark.parametrize(
    ("s", "n", "p0", "up", "positive"),
    [(20, 100, 0.05, True, True), (2, 100, 0.05, True, False), (0, 100, 0.05, False, True),
     (10, 100, 0.05, False, False), (0, 0, 0.05, True, False)],
)  # fmt: skip
def test_rate_evidence_points_the_right_way(
    s: float, n: float, p0: float, up: bool, positive: bool
) -> None:
    assert (float(rate_log_evidence(s, n, p0, up=up)) > 0) is positive


def test_rate_evidence_is_an_e_process_at_the_null() -> None:
    """Looking after every trial, the mixture reaches 1/alpha in at most alpha of runs."""
    rng = np.random.default_rng(5)
    runs, need = 4000, math.log(1 / 0.05)
    events = np.zeros(runs)
    crossed = np.zeros(runs, dtype=bool)
    for n in range(1, 2001):
        events += rng.random(runs) < 0.1
        crossed |= rate_log_evidence(events, n, 0.1, up=True) >= need
    assert crossed.mean() <= 0.05


def test_mean_mixture_holds_its_level_for_a_gaussian_mean_under_continuous_looks() -> None:
    rng = np.random.default_rng(11)
    runs, need = 3000, math.log(1 / 0.05)
    total = np.zeros(runs)
    crossed = np.zeros(runs, dtype=bool)
    for n in range(1, 1001):
        total += rng.normal(0.0, 1.0, runs)
        crossed |= mean_log_evidence(total / n, 1.0 / n, 0.2) >= need
    assert crossed.mean() <= 0.05


@pytest.mark.parametrize("variance", [0.0001, 0.01, 1.0])
def test_mean_margin_is_where_the_evidence_reaches_the_level(variance: float) -> None:
    margin = mean_margin(variance, 0.05, 0.2)
    assert float(mean_log_evidence(margin, variance, 0.2)) == pytest.approx(math.log(20), abs=1e-6)
    assert mean_margin(variance / 4, 0.05, 0.2) < margin


def test_mean_margin_of_a_certain_estimate_is_zero() -> None:
    assert mean_margin(0.0, 0.05, 0.2) == 0.0
