"""Every trigger rule as a table: fires, does not fire, not enough data."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from tara.telemetry.windows import WindowStats, latency_bucket
from tara.triggers import comparisons, rules
from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, CellStats, Observations, Scope, Window

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
    latency = next(r for r in results if r.name == "latency_p95")  # per segment, no answers
    assert (latency.outcome, latency.scope) == ("insufficient", HI_MATH)
    placeholder = next(r for r in results if r.name == "topic_retry_rate")  # no cells given
    assert (placeholder.outcome, placeholder.scope) == ("insufficient", EVERYTHING)


def cell(requests: int = 0, retries: int = 0, **fields: int) -> CellStats:
    return CellStats(requests=requests, user_retries=retries, **fields)


@pytest.mark.parametrize(
    ("stats", "outcome"),
    [
        (cell(50, 16), "fired"),  # 32% > 30%
        (cell(50, 15), "ok"),  # 30% exactly: not more
        (cell(400, 20), "ok"),
        (cell(49, 40), "insufficient"),  # a small topic never fires
    ],
)
def test_topic_retry_rate(stats: CellStats, outcome: str) -> None:
    topic = Scope(language="hi", subject="math", topic="algebra")
    r = rules.topic_retry_rate(topic, stats, CFG)
    assert (r.outcome, r.scope, r.sample, r.min_sample) == (outcome, topic, stats.requests, 50)
    assert r.value == pytest.approx(stats.user_retries / stats.requests)


def test_topic_retry_rate_says_how_the_topic_was_known() -> None:
    other = Scope(language="hi", subject="math", topic="other")
    r = rules.topic_retry_rate(other, cell(60, 30, derived=45, evictions=7), CFG)
    assert r.evidence == {"retries": 30, "requests": 60, "derived": 45, "evictions": 7}


def _cells(**cells: CellStats) -> dict[Scope, CellStats]:
    """Cells of hi×math: ``grade_10=...`` or ``topic_algebra=...``."""
    out = {}
    for key, stats in cells.items():
        kind, _, name = key.partition("_")
        out[Scope(language="hi", subject="math", **{kind: name})] = stats
    return out


def rated(n: int, mean: float, flagged: int = 0) -> CellStats:
    return cell(n, ratings=n, rating_sum=round(mean * n), flagged=flagged)


def test_knowledge_gap_lists_each_gap_with_its_numbers() -> None:
    cells = _cells(
        grade_10=rated(30, 2.5),  # low rating
        topic_algebra=rated(40, 4.2, flagged=10),  # 25% tagged wrong/irrelevant > 20%
        topic_geometry=rated(40, 4.5, flagged=2),  # fine
        topic_calculus=rated(29, 1.0),  # too few ratings to judge, however bad
    )
    r = rules.knowledge_gap(HI_MATH, cells, CFG)
    assert (r.fired, r.value, r.threshold, r.sample, r.min_sample) == (True, 2, 1, 40, 30)
    assert r.evidence["gaps"] == [
        {"grade": "10", "rating_mean": 2.5, "flagged_share": 0.0, "ratings": 30,
         "reasons": ["low rating"]},
        {"topic": "algebra", "rating_mean": 4.2, "flagged_share": 0.25, "ratings": 40,
         "reasons": ["tagged wrong/irrelevant"]},
    ]  # fmt: skip
    assert (r.evidence["cells_judged"], r.evidence["cells_too_small"]) == (3, 1)


@pytest.mark.parametrize(
    ("cells", "outcome"),
    [
        (_cells(topic_algebra=rated(30, 3.4)), "fired"),
        (_cells(topic_algebra=rated(30, 3.5), grade_8=rated(100, 4.0, flagged=20)), "ok"),
        (_cells(topic_algebra=rated(29, 1.0), grade_8=rated(10, 1.0, flagged=10)), "insufficient"),
        ({}, "insufficient"),
    ],
)
def test_knowledge_gap(cells: dict[Scope, CellStats], outcome: str) -> None:
    assert rules.knowledge_gap(HI_MATH, cells, CFG).outcome == outcome


def test_knowledge_gap_names_how_often_other_took_folded_topics() -> None:
    other = _cells(topic_other=CellStats(requests=40, ratings=40, rating_sum=80, evictions=3))
    assert rules.knowledge_gap(HI_MATH, other, CFG).evidence["gaps"][0]["evictions"] == 3


Z99 = comparisons.critical_z(0.99)


@pytest.mark.parametrize(
    ("mine", "others", "outcome"),
    [
        (ratings(0, 20, 20, 0, 0), ratings(0, 0, 0, 50, 50), "fired"),  # 2.5 vs 4.5
        (ratings(0, 0, 8, 16, 16), ratings(0, 0, 10, 30, 60), "ok"),  # 4.2 vs 4.5: noise
        # Significant but small: 4.4 vs 4.5 over 10,000 each is not 0.2 behind.
        (ratings(0, 0, 1000, 4000, 5000), ratings(0, 0, 500, 4000, 5500), "ok"),
        (ratings(0, 0, 0, 0, 40), ratings(40, 0, 0, 0, 0), "ok"),  # ahead, not behind
        (ratings(29, 0, 0, 0, 0), ratings(0, 0, 0, 0, 100), "insufficient"),
        (ratings(40, 0, 0, 0, 0), ratings(0, 0, 0, 0, 29), "insufficient"),
    ],
)
def test_language_rating(mine: WindowStats, others: WindowStats, outcome: str) -> None:
    r = rules.language_rating(HI_MATH, mine, others, Z99, CFG)
    assert (r.outcome, r.threshold, r.min_sample) == (outcome, 0.2, 30)
    assert r.sample == min(mine.rating_count, others.rating_count)
    if outcome != "insufficient":
        raw_gap = others.rating_mean - mine.rating_mean  # type: ignore[operator]
        assert r.value is not None
        assert r.value <= raw_gap  # a bound at or below the raw difference


@pytest.mark.parametrize(
    ("mine", "others", "outcome"),
    [
        ((12, 60), (1, 200), "fired"),  # 20% vs 0.5%
        ((4, 40), (0, 200), "ok"),  # 10% vs 0, but 4 complaints are too few
        ((6, 40), (20, 200), "ok"),  # 15% vs 10%: within noise
        ((20, 29), (0, 200), "insufficient"),
    ],
)
def test_language_complaints(mine: tuple[int, int], others: tuple[int, int], outcome: str) -> None:
    def stats(tagged: int, n: int) -> WindowStats:
        return ratings(0, 0, 0, 0, n, tags={"language": tagged})

    r = rules.language_complaints(HI_MATH, stats(*mine), stats(*others), Z99, CFG)
    assert (r.outcome, r.evidence["complaints"], r.evidence["others_complaints"]) == (
        outcome,
        mine[0],
        others[0],
    )


def test_comparisons_match_published_values() -> None:
    assert comparisons.critical_z(0.99) == pytest.approx(2.3263, abs=1e-4)
    assert comparisons.critical_z(0.99, 10) == pytest.approx(3.0902, abs=1e-4)
    assert comparisons.critical_z(0.975) == pytest.approx(1.96, abs=1e-3)
    # Wilson intervals (Newcombe 1998, table I): 0/10 and 81/263 at 95%.
    assert comparisons.wilson(0, 10, 1.96) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert comparisons.wilson(81, 263, 1.96) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    # Newcombe's method 10, his example 56/70 vs 48/80: 95% interval 0.0524 to 0.3339.
    assert comparisons.share_gap_lower((56, 70), (48, 80), 1.96) == pytest.approx(0.0524, abs=1e-4)
    assert comparisons.mean_var([0, 0, 1, 0, 1]) == (4.0, 2.0)
    assert comparisons.mean_var([0, 0, 0, 0, 1]) == (5.0, 0.0)
    # Two groups of one rating value each: no variance, the bound is the raw gap.
    assert comparisons.mean_gap_lower([0, 0, 9, 0, 0], [0, 0, 0, 9, 0], Z99) == 1.0


def test_evaluate_reads_latency_per_segment_and_stamps_windows() -> None:
    now, period = at_ist(2025, 1, 10), 7 * 86_400.0
    obs = Observations(now=now, period=period)
    ta_phys = Scope(language="ta", subject="physics")
    obs.current = {HI_MATH: latencies(1.3, 200), ta_phys: latencies(1.0, 200)}
    obs.previous = {HI_MATH: latencies(1.0, 200), ta_phys: latencies(1.0, 99)}
    obs.high_quality[HI_MATH] = 10
    obs.volume_since[HI_MATH] = now - 30 * 86_400
    results = rules.evaluate(obs, CFG, subjects=["math"], languages=["hi"])
    latency = {r.scope: r for r in results if r.name == "latency_p95"}
    assert (latency[HI_MATH].outcome, latency[HI_MATH].sample) == ("fired", 200)
    assert (latency[ta_phys].outcome, latency[ta_phys].sample) == ("insufficient", 99)
    by_name = {r.name: r for r in results}
    week = Window(now - period, now)
    assert latency[HI_MATH].window == Window(now - period, now, now - 2 * period)
    assert by_name["low_rating"].window == week
    assert by_name["topic_retry_rate"].window == week  # even the "no traffic" row
    assert by_name["data_volume"].window == Window(now - 30 * 86_400, now)
    assert by_name["academic_year"].window is None
    assert by_name["low_rating"].as_json()["window"] == {"start": now - period, "end": now}
    for r in results:
        dated = r.name in ("academic_year", "base_model_retirement")  # a date, not a sample
        assert dated or r.sample is not None, r.name
        if r.min_sample is not None and r.sample is not None and r.sample < r.min_sample:
            assert not r.fired, r.name  # below its minimum sample, no rule fires


def test_evaluate_compares_each_language_with_the_others_in_its_subject() -> None:
    obs = Observations(now=at_ist(2025, 1, 10), period=7 * 86_400.0)
    en_math, ta_math = Scope(language="en", subject="math"), Scope(language="ta", subject="math")
    obs.current = {
        HI_MATH: ratings(0, 30, 30, 0, 0),  # 2.5
        en_math: ratings(0, 0, 0, 30, 30),  # 4.5
        ta_math: ratings(0, 0, 0, 30, 30),  # 4.5
        Scope(language="ta", subject="physics"): ratings(60, 0, 0, 0, 0),  # alone in physics
        Scope(subject="math"): ratings(60, 0, 0, 0, 0),  # no language: never compared
    }
    results = rules.evaluate(obs, CFG, subjects=["math"], languages=["hi"])
    rating = {r.scope.key: r for r in results if r.name == "language_rating"}
    assert {k for k, r in rating.items() if r.fired} == {"language=hi,subject=math"}
    assert rating["language=ta,subject=physics"].outcome == "insufficient"  # no others
    assert "subject=math" not in rating
    # Three language×subjects could be compared: the 99% is split three ways.
    z = rating["language=hi,subject=math"].evidence["z"]
    assert z == pytest.approx(comparisons.critical_z(0.99, 3), abs=1e-3)


def test_the_manual_lists_every_trigger_and_no_other() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "fine-tuning.md").read_text()
    section = page.split("## Triggers: when to fine-tune", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {name for line in table for name in re.findall(r"`([a-z0-9_]+)`", line.split("|")[1])}
    assert listed <= set(rules.TRIGGERS)
    for name in rules.TRIGGERS:  # each documented on the page (the table or its own section)
        assert f"`{name}`" in page, name
