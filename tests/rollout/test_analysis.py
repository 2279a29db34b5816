"""Each canary check as a table of cases, the verdict over them, and the reported numbers."""

from __future__ import annotations

import json

import pytest

from tara.rollout.analysis import (
    Levels,
    Outcome,
    analyse,
    check_error_rate,
    check_latency,
    check_rating_drop,
    check_rating_rate,
    check_sample_ratio,
    stats_problem,
)
from tara.rollout.config import RolloutSettings
from tara.rollout.plan import Stage
from tara.rollout.report import compare, success_report
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats, latency_bucket

CFG = RolloutSettings()
LEVELS = Levels.of(CFG)
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
    assert check_error_rate(canary, stable, CFG, LEVELS).outcome is expected


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
    assert check_rating_drop(canary, stable, CFG, LEVELS).outcome is expected


def test_rating_variance_floor_keeps_identical_ratings_uncertain() -> None:
    """Thirty 4s against thirty 5s have no spread, yet thirty ratings cannot be certainty."""
    m = check_rating_drop(
        stats(ratings=(0, 0, 0, 30, 0)), stats(ratings=(0, 0, 0, 0, 30)), CFG, LEVELS
    )
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
    assert check_latency(canary, stable, CFG, LEVELS).outcome is expected


def test_latency_compares_with_an_upper_bound_of_stables_quantile() -> None:
    """Stable's p95 is itself uncertain: a rollback needs the canary past 2x its upper bound."""
    m = check_latency(stats(latencies={2.0: 700, 20.0: 300}), stats(latencies=SPREAD), CFG, LEVELS)
    e = m.evidence
    assert e["stable_quantile_lower"] < e["stable_quantile"] < e["stable_quantile_upper"]
    assert e["threshold_seconds"] == pytest.approx(2 * e["stable_quantile_upper"])
    assert e["slow_share"] == pytest.approx(0.3)
    assert m.reason.startswith("30.00% of canary requests slower than")


def test_more_stable_samples_tighten_its_quantile_bounds() -> None:
    few = check_latency(stats(latencies={1.0: 10}), stats(latencies=SPREAD), CFG, LEVELS)
    many = {k: 20 * v for k, v in SPREAD.items()}
    lots = check_latency(stats(latencies={1.0: 10}), stats(latencies=many), CFG, LEVELS)
    assert lots.evidence["stable_quantile_upper"] < few.evidence["stable_quantile_upper"]
    assert lots.evidence["stable_quantile_lower"] > few.evidence["stable_quantile_lower"]


@pytest.mark.parametrize(
    ("requests", "errors", "fail_at", "pass_at"),
    [(100, 3, 11, 0), (1000, 12, 75, 31)],
)
def test_error_evidence_says_where_the_boundaries_are(
    requests: int, errors: int, fail_at: int, pass_at: int
) -> None:
    e = check_error_rate(stats(requests, errors), stats(9000, 90), CFG, LEVELS).evidence
    assert (e["fail_at"], e["pass_at"]) == (fail_at, pass_at)


def test_each_stage_may_set_its_own_rollback_confidence() -> None:
    stage = Stage(1000, 60.0, 0, 0, 10.0, fail_confidence=0.8)
    assert Levels.of(CFG, stage).fail == pytest.approx(0.2)
    assert Levels.of(CFG, Stage(1000, 60.0, 0, 0, 10.0)).fail == pytest.approx(0.05)
    assert Levels.of(CFG).srm == pytest.approx(0.001)


def crowd(requests: int, students: int, anon: int = 0, fallbacks: int = 0) -> WindowStats:
    return WindowStats(requests=requests, students=students, unidentified=anon, fallbacks=fallbacks)


@pytest.mark.parametrize(
    ("canary", "stable", "weight_bp", "expected"),
    [
        (crowd(1000, 100), crowd(9000, 900), 1000, Outcome.PASS),
        (crowd(10, 5), crowd(30, 25), 1000, Outcome.PASS),  # too little to tell
        (crowd(5000, 500), crowd(45000, 4500), 1000, Outcome.PASS),
        (crowd(2600, 260), crowd(47400, 4740), 1000, Outcome.FAIL),  # half its students
        (crowd(5000, 900), crowd(45000, 4100), 1000, Outcome.FAIL),  # too many students
        (crowd(2000, 500), crowd(48000, 4500), 1000, Outcome.FAIL),  # students right, requests not
        (crowd(5000, 500), crowd(60000, 4500, anon=10000, fallbacks=5000), 1000, Outcome.PASS),
        (crowd(5000, 500), crowd(45000, 4500), 2500, Outcome.FAIL),  # an old weight
        (WindowStats(requests=100), WindowStats(requests=900), 1000, Outcome.INCONCLUSIVE),
    ],
)
def test_sample_ratio(
    canary: WindowStats, stable: WindowStats, weight_bp: int, expected: Outcome
) -> None:
    assert check_sample_ratio(canary, stable, weight_bp, CFG, LEVELS).outcome is expected


def test_sample_ratio_mismatch_names_the_numbers() -> None:
    m = check_sample_ratio(crowd(2600, 260), crowd(47400, 4740), 1000, CFG, LEVELS)
    assert m.reason == (
        "sample ratio mismatch: canary has 260 of 5000 distinct students (5.2%) and 5.2% of "
        "50000 requests for a weight of 10%"
    )
    assert (m.evidence["canary_student_share"], m.evidence["weight"]) == (0.052, 0.1)


def rated(answers: int, ratings: int) -> WindowStats:
    w = WindowStats(requests=answers)
    w.ratings = [0, 0, 0, ratings, 0]
    return w


@pytest.mark.parametrize(
    ("canary", "stable", "expected"),
    [
        (rated(1000, 300), rated(9000, 2700), Outcome.PASS),
        (rated(3000, 600), rated(27000, 8100), Outcome.FAIL),
        (rated(3000, 1260), rated(27000, 8100), Outcome.FAIL),
        (rated(1000, 200), rated(9000, 2700), Outcome.PASS),  # not yet clear
        (rated(100, 20), rated(900, 270), Outcome.PASS),  # too little to tell
        (rated(1000, 270), rated(9000, 2700), Outcome.PASS),  # within the tolerance
        (rated(0, 0), rated(900, 270), Outcome.INCONCLUSIVE),
    ],
)
def test_rating_rate(canary: WindowStats, stable: WindowStats, expected: Outcome) -> None:
    assert check_rating_rate(canary, stable, CFG, LEVELS).outcome is expected


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
    assert [g["check"] for g in data["guards"]] == ["rating_rate"]


def test_a_stage_adds_the_sample_ratio_guard() -> None:
    result = analyse(healthy(), healthy(), CFG, Stage(5000, 60.0, 0, 0, 10.0))
    assert [g.check for g in result.guards] == ["sample_ratio", "rating_rate"]
    assert result.guard("sample_ratio") is None  # stats without student counts: not checked
    assert result.guards[0].outcome is Outcome.INCONCLUSIVE


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
