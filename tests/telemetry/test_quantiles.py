"""The one quantile estimator: hand-checked cases, and against exact quantiles of real samples."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tara.telemetry.quantiles import count_above, histogram_quantile, sample_quantile
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats, latency_bucket

B = LATENCY_BOUNDS


def histogram(values: list[float]) -> list[int]:
    hist = [0] * (len(B) + 1)
    for v in values:
        hist[latency_bucket(v)] += 1
    return hist


def exact(values: list[float], q: float) -> float:
    """The inverted-CDF sample quantile: the smallest value with at least ``q·n`` at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@pytest.mark.parametrize(
    ("hist", "q", "expected"),
    [
        ([], 0.5, None),
        ([0] * (len(B) + 1), 0.5, None),
        ([10] + [0] * len(B), 0.5, B[0] / 2),
        ([0, 10] + [0] * (len(B) - 1), 0.5, math.sqrt(B[0] * B[1])),
        ([0] * len(B) + [3], 0.5, math.inf),
    ],
)  # fmt: skip
def test_quantile_interpolates_within_a_bucket(
    hist: list[int], q: float, expected: float | None
) -> None:
    assert histogram_quantile(hist, B, q) == (pytest.approx(expected) if expected else expected)


def test_count_above_splits_the_threshold_bucket() -> None:
    hist = [0] * (len(B) + 1)
    hist[10], hist[11], hist[-1] = 10, 5, 2
    low, high = B[9], B[10]
    assert count_above(hist, B, math.sqrt(low * high)) == pytest.approx(5 + 5 + 2)
    assert count_above(hist, B, low) == 17
    assert count_above(hist, B, 0.0) == 17
    assert count_above(hist, B, B[-1]) == 0.0
    first = [8] + [0] * len(B)
    assert count_above(first, B, B[0] / 4) == pytest.approx(6)


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("lognormal", lambda rng: rng.lognormvariate(math.log(0.8), 0.6)),
        ("exponential", lambda rng: rng.expovariate(1 / 1.5)),
        ("uniform", lambda rng: rng.uniform(0.05, 4.0)),
        ("pareto tail", lambda rng: 0.2 * rng.paretovariate(2.5)),
    ],
)
@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_histogram_quantile_is_within_a_few_percent_of_the_exact_one(
    name: str, draw: object, q: float
) -> None:
    rng = random.Random(f"{name}-{q}")
    values = [draw(rng) for _ in range(50_000)]  # type: ignore[operator]
    estimate = histogram_quantile(histogram(values), B, q)
    assert estimate == pytest.approx(exact(values, q), rel=0.03)


@given(
    st.lists(st.floats(min_value=0.0, max_value=400.0), min_size=1, max_size=300),
    st.floats(min_value=0.01, max_value=0.99),
)
def test_the_estimate_lies_in_the_bucket_of_the_exact_quantile(
    values: list[float], q: float
) -> None:
    true = exact(values, q)
    estimate = histogram_quantile(histogram(values), B, q)
    assert estimate is not None
    bucket = latency_bucket(true)
    if bucket == len(B):
        assert estimate == math.inf
    else:
        low = B[bucket - 1] if bucket else 0.0
        assert low <= estimate <= B[bucket] * (1 + 1e-12)


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=len(B), max_size=len(B)))
def test_count_above_reads_the_quantile_back(counts: list[int]) -> None:
    hist = [*counts, 0]
    total = sum(hist)
    for q in (0.25, 0.5, 0.95):
        estimate = histogram_quantile(hist, B, q)
        if estimate is None:
            assert total == 0
            continue
        assert count_above(hist, B, estimate) == pytest.approx((1 - q) * total, abs=1e-6)


def test_window_stats_use_the_same_estimator() -> None:
    values = [random.Random(3).lognormvariate(0, 0.5) for _ in range(1000)]
    stats = WindowStats(requests=1000, latency=histogram(values), ttft=histogram(values))
    assert stats.latency_quantile(0.95) == histogram_quantile(histogram(values), B, 0.95)
    assert stats.ttft_quantile(0.95) == stats.latency_quantile(0.95)
    assert stats.slower_than(1.0) == count_above(histogram(values), B, 1.0)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.95, None),
        ([5.0], 0.95, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
        ([10.0, 20.0], 0.95, 19.5),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_sample_quantile_interpolates_between_order_statistics(
    values: list[float], q: float, expected: float | None
) -> None:
    assert sample_quantile(values, q) == (pytest.approx(expected) if expected else expected)
