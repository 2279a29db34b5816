"""Sequential tests: exact boundaries, mixtures, and their error rates under continuous looks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tara.rollout.sequential import (
    RateTest,
    _log_uniform,
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


# -- exact values: a changed constant, bound or index must move one of these -----------


@pytest.mark.parametrize(
    ("limit", "cap"),
    [
        (0.05, 20_000),
        (0.02, 50_000),
        (0.2, 10_000),
        (0.5, 10_000),
        (0.95, 19_999),
        (0.001, 100_000),
    ],
)
def test_horizon_values(limit: float, cap: int) -> None:
    assert horizon(limit) == cap


@pytest.mark.parametrize(
    ("n", "fail_at"),
    [(1, 2), (2, 3), (4, 5), (10, 4), (30, 6), (60, 10), (200, 15), (500, 38), (3000, 185)],
)
def test_more_fail_boundary_values(n: int, fail_at: int) -> None:
    assert FAIL.threshold(n) == fail_at


@pytest.mark.parametrize(
    ("n", "pass_at"), [(20, -1), (80, -1), (150, 1), (200, 2), (300, 5), (500, 11)]
)
def test_more_pass_boundary_values(n: int, pass_at: int) -> None:
    assert PASS.threshold(n) == pass_at


TAIL_N = [19_999, 20_000, 20_001, 20_199, 20_200, 20_201, 10_021_252_731, 10_021_252_732, 10**11]
"""Around the horizon (20,000 at 5%), around the first grid step past it (20,200), at the last
grid point and past it."""


def test_fail_boundary_across_the_horizon_and_past_the_grid() -> None:
    want = [1089, 1089, 1153, 1153, 1153, 1164, 557_888_490, math.inf, math.inf]
    assert FAIL.threshold(TAIL_N).tolist() == want


def test_pass_boundary_across_the_horizon_and_past_the_grid() -> None:
    want = [911, 911, 866, 866, 875, 875, 451_354_957, 451_354_957, 451_354_957]
    assert PASS.threshold(TAIL_N).tolist() == want


def test_a_count_below_zero_reads_the_first_entry() -> None:
    assert (FAIL.threshold(-1), PASS.threshold(-1)) == (1, -1)


def test_rejects_at_the_threshold_and_not_one_short_of_it() -> None:
    assert FAIL.rejects([10, 9, 1089, 1088], [60, 60, 20_000, 20_000]).tolist() == [
        True,
        False,
        True,
        False,
    ]
    assert PASS.rejects([31, 32, 0, 1], [1000, 1000, 100, 100]).tolist() == [
        True,
        False,
        True,
        False,
    ]


def test_rate_evidence_values() -> None:
    assert float(rate_log_evidence(20, 100, 0.05, up=True)) == pytest.approx(12.551668850989241)
    assert float(rate_log_evidence(0, 100, 0.05, up=False)) == pytest.approx(3.0876139783722016)
    assert float(rate_log_evidence(3, 10, 0.5, up=True)) == pytest.approx(-1.486281341848097)


def test_rate_evidence_is_elementwise_over_arrays() -> None:
    got = rate_log_evidence([20, 2, 0], [100, 100, 0], [0.05, 0.05, 0.1], up=True)
    want = [
        float(rate_log_evidence(s, n, p, up=True))
        for s, n, p in ((20, 100, 0.05), (2, 100, 0.05), (0, 0, 0.1))
    ]
    assert got.tolist() == pytest.approx(want)
    assert want[2] == 0.0  # no trials, no evidence


@pytest.mark.parametrize(("s", "p0", "up"), [(0, 0.0, True), (10, 1.0, False)])
def test_rate_evidence_at_a_null_of_zero_or_one_stays_finite(s: int, p0: float, up: bool) -> None:
    value = float(rate_log_evidence(s, 10, p0, up=up))
    assert math.isfinite(value)
    assert value == pytest.approx(0.0, abs=1e-9)  # what was expected happened: no evidence


def test_mean_evidence_values() -> None:
    assert float(mean_log_evidence(0.3, 0.01, 0.2)) == pytest.approx(3.2215459067251904)
    got = mean_log_evidence([0.3, -0.1], [0.01, 0.04], 0.2)
    assert got.tolist() == pytest.approx([3.2215459067251904, -0.93631666])


def test_mean_margin_value() -> None:
    assert mean_margin(0.01, 0.05, 0.2) == pytest.approx(0.2915366825961332, rel=1e-9)


@pytest.mark.parametrize(
    ("low", "high", "want"),
    [(3.0, 12.0, [0, 0, 0, 0, 0.5, 1, 1]), (3.0, 3.0, [0, 0, 0, 1, 1, 1, 1])],
)
def test_spending_shares_are_linear_in_log_between_their_ends(
    low: float, high: float, want: list[float]
) -> None:
    """``_log_uniform``: 0 below ``low``, 1 from ``high`` on (a step when they meet)."""
    x = np.array([0.0, 1.0, 2.0, 3.0, 6.0, 12.0, 24.0])
    assert _log_uniform(x, low, high).tolist() == pytest.approx(want)
