"""Every trigger rule as a table: fires, does not fire, not enough data."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from datetime import timedelta

import pytest

from tara.telemetry.windows import WindowStats, latency_bucket
from tara.triggers import rules
from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, Observations, Scope

CFG = TriggerSettings()
HI_MATH = Scope(language="hi", subject="math")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def ratings(*counts: int, tags: dict[str, int] | None = None) -> WindowStats:
    """Stats with ``counts[i]`` ratings of ``i + 1`` stars."""
    return WindowStats(ratings=list(counts), tags=dict(tags or {}))


def latencies(scale: float, n: int) -> WindowStats:
    """``n`` answers spread evenly over ``scale`` × (0.5 s .. 1.5 s)."""
    stats = WindowStats(requests=n)
    for i in range(n):
        stats.latency[latency_bucket(scale * (0.5 + i / n))] += 1
    return stats


def at_ist(year: int, month: int, day: int) -> float:
    return dt.datetime(year, month, day, 12, tzinfo=IST).timestamp()


@pytest.mark.parametrize(
    ("count", "fired", "optimal"),
    [(999, False, False), (1000, True, False), (5000, True, True), (10_001, True, False)],
)
def test_data_volume(count: int, fired: bool, optimal: bool) -> None:
    r = rules.data_volume(HI_MATH, count, 100.0, CFG)
    assert (r.fired, r.value, r.threshold, r.evidence["optimal"]) == (fired, count, 1000, optimal)
    assert r.evidence["since"] == 100.0


@pytest.mark.parametrize(
    ("stats", "outcome", "value"),
    [
        (ratings(10, 5, 5, 5, 5), "fired", 2.667),  # mean 2.67 < 3.5
        (ratings(0, 0, 15, 0, 15), "ok", 4.0),
        (ratings(0, 0, 30, 0, 0), "fired", 3.0),
        (ratings(0, 0, 0, 0, 0), "insufficient", None),
        (ratings(29, 0, 0, 0, 0), "insufficient", 1.0),  # a handful of ones cannot fire
    ],
)
def test_low_rating(stats: WindowStats, outcome: str, value: float | None) -> None:
    r = rules.low_rating(HI_MATH, stats, CFG)
    assert r.outcome == outcome
    assert r.value == (None if value is None else pytest.approx(value, abs=1e-3))


@pytest.mark.parametrize(
    ("now", "before", "outcome"),
    [
        (ratings(12, 0, 0, 0, 88), ratings(10, 0, 0, 0, 90), "ok"),  # +20% exactly: not more
        (ratings(13, 0, 0, 0, 87), ratings(10, 0, 0, 0, 90), "fired"),  # +30%
        (ratings(6, 0, 0, 0, 94), ratings(10, 0, 0, 0, 90), "ok"),  # fell
        (ratings(5, 0, 0, 0, 95), ratings(0, 0, 0, 0, 100), "fired"),  # from zero, 5 events
        (ratings(4, 0, 0, 0, 96), ratings(0, 0, 0, 0, 100), "ok"),  # from zero, too few events
        (ratings(10, 0, 0, 0, 10), ratings(1, 0, 0, 0, 99), "insufficient"),  # 20 ratings now
        (ratings(20, 0, 0, 0, 20), ratings(1, 0, 0, 0, 9), "insufficient"),  # 10 before
    ],
)
def test_negative_feedback_compares_shares(
    now: WindowStats, before: WindowStats, outcome: str
) -> None:
    assert rules.negative_feedback(HI_MATH, now, before, CFG).outcome == outcome


def test_negative_feedback_ignores_traffic_growth() -> None:
    # Twice the traffic and twice the negatives: the share is flat.
    r = rules.negative_feedback(HI_MATH, ratings(20, 0, 0, 0, 180), ratings(10, 0, 0, 0, 90), CFG)
    assert (r.fired, r.value) == (False, pytest.approx(0.0))


@pytest.mark.parametrize(
    ("n", "mean", "outcome"),
    [(40, 0.5, "fired"), (40, 0.7, "ok"), (40, 0.9, "ok"), (29, 0.1, "insufficient")],
)
def test_low_relevance(n: int, mean: float, outcome: str) -> None:
    stats = WindowStats(relevance_sum=mean * n, relevance_count=n)
    r = rules.low_relevance(HI_MATH, stats, CFG)
    assert r.outcome == outcome
    assert r.value == pytest.approx(mean)


@pytest.mark.parametrize(
    ("now_tags", "before_tags", "outcome"),
    [
        (6, 5, "fired"),  # rising, and past the minimum of 5 complaints
        (5, 5, "ok"),  # flat
        (3, 1, "ok"),  # rising but too few complaints to mean anything
        (5, 0, "fired"),
    ],
)
def test_cultural_complaints(now_tags: int, before_tags: int, outcome: str) -> None:
    now = ratings(0, 0, 50, 0, 50, tags={"cultural": now_tags})
    before = ratings(0, 0, 50, 0, 50, tags={"cultural": before_tags})
    assert rules.cultural_complaints(HI_MATH, now, before, CFG).outcome == outcome


def test_cultural_complaints_need_ratings_in_both_periods() -> None:
    now = ratings(0, 0, 50, 0, 50, tags={"cultural": 20})
    r = rules.cultural_complaints(HI_MATH, now, ratings(0, 0, 5, 0, 5), CFG)
    assert (r.outcome, r.value) == ("insufficient", None)


@pytest.mark.parametrize(
    ("scale", "n", "outcome"),
    [
        (1.2, 200, "fired"),  # everything 20% slower
        (1.3, 200, "fired"),  # p95 in the same 25%-wide bucket as at 1.2: interpolation tells
        (1.1, 200, "ok"),  # 10% slower
        (0.8, 200, "ok"),
        (3.0, 50, "insufficient"),
    ],
)
def test_latency_degraded(scale: float, n: int, outcome: str) -> None:
    track = Scope(track="tara-tutor")
    r = rules.latency_degraded(track, latencies(scale, n), latencies(1.0, n), CFG)
    assert r.outcome == outcome
    assert r.evidence["answers"] == n


@pytest.mark.parametrize(
    ("retries", "requests", "outcome"),
    [(31, 100, "fired"), (30, 100, "ok"), (0, 500, "ok"), (90, 99, "insufficient")],
)
def test_retry_rate(retries: int, requests: int, outcome: str) -> None:
    stats = WindowStats(requests=requests, user_retries=retries)
    r = rules.retry_rate(HI_MATH, stats, CFG)
    assert r.outcome == outcome
    assert r.value == pytest.approx(retries / requests)


@pytest.mark.parametrize(
    ("value", "seen", "known", "previous_total", "outcome", "reasons"),
    [
        ("biology", (25, 30), {"math"}, 500, "fired", ["not configured"]),
        ("math", (25, 0), {"math"}, 500, "fired", ["new this period"]),
        ("math", (25, 10), {"math"}, 500, "ok", []),
        ("math", (25, 0), {"math"}, 50, "ok", []),  # too little history to call it new
        ("biology", (19, 0), {"math"}, 500, "insufficient", ["not configured", "new this period"]),
        ("11", (40, 0), None, 500, "fired", ["new this period"]),  # grades: history only
        ("11", (40, 3), None, 500, "ok", []),
    ],
)
def test_new_in_traffic(
    value: str,
    seen: tuple[int, int],
    known: set[str] | None,
    previous_total: int,
    outcome: str,
    reasons: list[str],
) -> None:
    r = rules.new_in_traffic("subject", value, seen, known, previous_total, CFG)
    assert (r.outcome, r.evidence["reasons"], r.scope) == (outcome, reasons, Scope(subject=value))
    assert r.name == rules.NEW_SUBJECT


@pytest.mark.parametrize(
    ("now", "last_run", "fired", "days"),
    [
        (at_ist(2025, 5, 15), None, True, 16.5),
        (at_ist(2025, 4, 15), None, False, 46.5),
        (at_ist(2025, 6, 1), None, True, -0.5),  # the day itself still counts
        (at_ist(2025, 6, 2), None, False, 363.5),  # next year's start
        (at_ist(2025, 5, 15), at_ist(2025, 5, 10), False, 16.5),  # already served this start
        (at_ist(2025, 5, 15), at_ist(2024, 5, 10), True, 16.5),  # served last year's only
    ],
)
def test_academic_year(now: float, last_run: float | None, fired: bool, days: float) -> None:
    r = rules.academic_year(now, last_run, CFG)
    assert (r.fired, r.value, r.threshold, r.scope) == (fired, days, 30.0, EVERYTHING)


def test_academic_year_dates_are_configurable() -> None:
    cfg = TriggerSettings(
        academic_year_starts=["04-01", "02-29"], academic_year_lead=timedelta(days=7)
    )
    assert rules.academic_year(at_ist(2025, 3, 28), None, cfg).fired
    assert not rules.academic_year(at_ist(2025, 3, 20), None, cfg).fired
    leap = rules.next_academic_year(at_ist(2028, 2, 1), cfg)
    assert leap is not None
    assert leap.date() == dt.date(2028, 2, 29)
    assert not rules.academic_year(
        at_ist(2025, 3, 20), None, cfg.model_copy(update={"academic_year_starts": []})
    ).enough_data


def test_settings_refuse_bad_dates_and_ranges() -> None:
    with pytest.raises(ValueError, match="MM-DD"):
        TriggerSettings(academic_year_starts=["13-01"])
    with pytest.raises(ValueError, match="optimal_high_quality"):
        TriggerSettings(optimal_high_quality=(10, 5))
    with pytest.raises(ValueError, match="period"):
        TriggerSettings(period=timedelta(0))
    with pytest.raises(ValueError, match="cooldown"):
        TriggerSettings(cooldown=timedelta(days=-1))


def test_relative_rise() -> None:
    assert rules.relative_rise(1.5, 1.0) == pytest.approx(0.5)
    assert rules.relative_rise(1.0, 0.0) == math.inf
    assert rules.relative_rise(0.0, 0.0) == 0.0


def test_evaluate_reports_every_trigger_in_order() -> None:
    obs = Observations(now=at_ist(2025, 1, 10), period=7 * 86_400.0)
    obs.current[HI_MATH] = ratings(20, 0, 0, 0, 20)
    obs.previous[HI_MATH] = ratings(1, 0, 0, 0, 39)
    obs.high_quality[HI_MATH] = 1200
    obs.seen_current = {
        "subject": Counter({"math": 40, "biology": 30}),
        "language": Counter(),
        "grade": Counter(),
    }
    obs.seen_previous = {
        "subject": Counter({"math": 200}),
        "language": Counter(),
        "grade": Counter(),
    }
    results = rules.evaluate(obs, CFG, subjects=["math"], languages=["hi"])
    names = [r.name for r in results]
    assert names == [n for n in rules.TRIGGERS for _ in range(names.count(n))]
    assert set(names) == set(rules.TRIGGERS)
    fired = {(r.name, r.scope.key) for r in results if r.fired}
    assert fired == {
        ("data_volume", "language=hi,subject=math"),
        ("low_rating", "language=hi,subject=math"),  # mean 3.0
        ("negative_feedback", "language=hi,subject=math"),  # 2.5% -> 50%
        ("new_subject", "subject=biology"),
    }
    volume = next(r for r in results if r.name == "data_volume")
    assert volume.evidence["since"] == obs.now  # no start known: counted up to now
    placeholder = next(r for r in results if r.name == "latency_p95")
    assert (placeholder.outcome, placeholder.scope) == ("insufficient", EVERYTHING)
