"""Each canary check as a table of cases, the verdict over them, and the reported numbers."""

from __future__ import annotations

import json

import pytest

from tara.rollout.analysis import (
    Outcome,
    analyse,
    check_error_rate,
    check_latency,
    check_rating_drop,
    stats_problem,
)
from tara.rollout.config import RolloutSettings
from tara.rollout.report import compare, success_report
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats, latency_bucket

CFG = RolloutSettings()
B = LATENCY_BOUNDS


def stats(
    requests: int = 0,
    errors: int = 0,
    ratings: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0),
    latencies: dict[float, int] | None = None,
) -> WindowStats:
    """Window stats with ``latencies`` as {seconds: how many}."""
    w = WindowStats(requests=requests, errors={"upstream": errors} if errors else {})
    w.ratings = list(ratings)
    for seconds, count in (latencies or {}).items():
        w.latency[latency_bucket(seconds)] += count
        w.latency_sum += seconds * count
    return w


GOOD = (20, 30, 100, 400, 450)  # mean 4.23
BAD = (120, 150, 300, 250, 180)  # mean 3.22


@pytest.mark.parametrize(
    ("canary", "stable", "expected"),
    [
        (stats(0), stats(1000, 10), Outcome.INCONCLUSIVE),
        (stats(2000, 20), stats(18000, 180), Outcome.PASS),
        (stats(100, 3), stats(900, 9), Outcome.INCONCLUSIVE),
        (stats(200, 40), stats(1800, 18), Outcome.FAIL),
        (stats(200, 40), stats(1800, 400), Outcome.INCONCLUSIVE),  # upstream trouble
        (stats(200, 40), stats(0), Outcome.FAIL),  # no stable to blame
    ],
)
def test_error_rate(canary: WindowStats, stable: WindowStats, expected: Outcome) -> None:
    assert check_error_rate(canary, stable, CFG).outcome is expected


@pytest.mark.parametrize(
    ("canary", "stable", "expected"),
    [
        (stats(ratings=(1, 1, 1, 1, 1)), stats(ratings=GOOD), Outcome.INCONCLUSIVE),
        (stats(ratings=GOOD), stats(ratings=GOOD), Outcome.PASS),
        (stats(ratings=BAD), stats(ratings=GOOD), Outcome.FAIL),
        (stats(ratings=(2, 3, 10, 8, 7)), stats(ratings=GOOD), Outcome.INCONCLUSIVE),
        (stats(ratings=(0, 0, 0, 0, 80)), stats(ratings=(0, 0, 0, 0, 80)), Outcome.PASS),
    ],
)
def test_rating_drop(canary: WindowStats, stable: WindowStats, expected: Outcome) -> None:
    assert check_rating_drop(canary, stable, CFG).outcome is expected


def test_rating_variance_floor_keeps_identical_ratings_uncertain() -> None:
    """Thirty 4s against thirty 5s have no spread, yet thirty ratings cannot be certainty."""
    m = check_rating_drop(stats(ratings=(0, 0, 0, 30, 0)), stats(ratings=(0, 0, 0, 0, 30)), CFG)
    assert m.evidence["drop"] == 1.0
    assert m.evidence["lower"] < 0.7
    assert m.evidence["upper"] > 1.3


SPREAD = {1.0: 300, 2.0: 400, 3.0: 250, 4.0: 40, 6.0: 10}
"""A stable latency profile with p95 around 3-4 s."""


@pytest.mark.parametrize(
    ("canary", "stable", "expected"),
    [
        (stats(latencies=SPREAD), stats(latencies={1.0: 100}), Outcome.INCONCLUSIVE),
        (stats(latencies={}), stats(latencies=SPREAD), Outcome.INCONCLUSIVE),
        (stats(latencies={1.0: 900, 2.0: 100}), stats(latencies=SPREAD), Outcome.PASS),
        (stats(latencies={2.0: 700, 20.0: 300}), stats(latencies=SPREAD), Outcome.FAIL),
        (stats(latencies={2.0: 90, 20.0: 10}), stats(latencies=SPREAD), Outcome.INCONCLUSIVE),
        (stats(latencies={1.0: 10}), stats(latencies={1000.0: 500}), Outcome.INCONCLUSIVE),
    ],
)
def test_latency(canary: WindowStats, stable: WindowStats, expected: Outcome) -> None:
    assert check_latency(canary, stable, CFG).outcome is expected


def test_latency_evidence_names_the_threshold() -> None:
    m = check_latency(stats(latencies={2.0: 700, 20.0: 300}), stats(latencies=SPREAD), CFG)
    assert m.evidence["threshold_seconds"] == pytest.approx(2 * m.evidence["stable_quantile"])
    assert m.evidence["slow_share"] == pytest.approx(0.3)
    bounds = m.to_dict()["evidence"]
    assert bounds["lower"] > 0.05
    assert bounds["lower"] < 0.3 < bounds["upper"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "no stats"),
        (ConnectionError("redis down"), "stats unreadable: ConnectionError: redis down"),
        (stats(5, 9), "stats claim 9 errors in 5 requests"),
        (stats(-1), "stats hold a negative counter"),
        (WindowStats(ratings=[1, 2]), "stats have histograms of the wrong shape"),
        (stats(10, 1), None),
    ],
)
def test_stats_problem(value: WindowStats | BaseException | None, problem: str | None) -> None:
    assert stats_problem(value) == problem


def healthy() -> WindowStats:
    return stats(2000, 20, GOOD, {1.0: 1000, 2.0: 900, 3.0: 80})


def test_verdict_passes_when_every_check_passes() -> None:
    assert analyse(healthy(), healthy(), CFG).outcome is Outcome.PASS


def test_verdict_fails_when_any_check_fails() -> None:
    bad = stats(2000, 20, BAD, {1.0: 1000, 2.0: 900, 3.0: 80})
    result = analyse(bad, healthy(), CFG)
    assert result.outcome is Outcome.FAIL
    assert "rating drop" in result.reason
    assert [m.outcome for m in result.measurements] == [Outcome.PASS, Outcome.FAIL, Outcome.PASS]


def test_verdict_waits_while_any_check_is_inconclusive() -> None:
    assert analyse(stats(10, 0, GOOD), healthy(), CFG).outcome is Outcome.INCONCLUSIVE


@pytest.mark.parametrize("missing", ["canary", "stable"])
def test_unreadable_stats_are_an_error_not_a_failure(missing: str) -> None:
    canary = None if missing == "canary" else healthy()
    stable = TimeoutError("slow") if missing == "stable" else healthy()
    result = analyse(canary, stable, CFG)
    assert result.outcome is Outcome.ERROR
    assert result.reason.startswith(missing)


def test_a_check_that_cannot_read_the_stats_is_an_error() -> None:
    absurd = healthy()
    absurd.requests = 10**400  # beyond a float: the error-rate check overflows
    result = analyse(absurd, healthy(), CFG)
    assert result.outcome is Outcome.ERROR
    assert "check_error_rate could not read the stats: OverflowError" in result.reason
    assert result.measurements[0].outcome is Outcome.ERROR


def test_non_numeric_counters_are_an_error() -> None:
    broken = healthy()
    broken.errors = {"upstream": "many"}  # type: ignore[dict-item]
    assert analyse(broken, healthy(), CFG).reason == "canary: stats hold a non-numeric counter"


def test_analysis_serialises_to_json() -> None:
    data = json.loads(json.dumps(analyse(healthy(), healthy(), CFG).to_dict()))
    assert data["outcome"] == "pass"
    assert {m["check"] for m in data["measurements"]} == {"error_rate", "rating_drop", "latency"}
    assert all("upper" in m["evidence"] for m in data["measurements"])


def test_compare_reports_the_success_metrics() -> None:
    canary = stats(1000, 10, GOOD, {1.0: 990})
    canary.user_retries, canary.completion_tokens, canary.tags = 50, 198_000, {"cultural": 2}
    stable = stats(1000, 10, BAD, {2.0: 990})
    stable.user_retries, stable.completion_tokens, stable.tags = 100, 247_500, {"cultural": 5}
    report = compare(canary, stable)
    assert report["rating_improvement"] == pytest.approx(4.23 - 3.22)
    assert report["p95_latency_improvement"] > 0.4
    assert report["mean_latency_improvement"] == pytest.approx(0.5)
    assert report["retry_rate_reduction"] == pytest.approx(0.5)
    assert report["tokens_per_answer_change"] == pytest.approx(200 - 250)
    assert report["cultural_complaints_change_per_1000"] == pytest.approx((2 - 5) / 990 * 1000)
    text = success_report(report)
    assert "rating: 4.23 vs 3.22 (+1.01)" in text
    assert "user retry rate: +50.0% lower" in text


def test_compare_without_data_says_not_available() -> None:
    report = compare(WindowStats(), WindowStats())
    assert report["rating_improvement"] is None
    assert "n/a" in success_report(report)
