"""Edges of single trigger rules that the tables and the golden check miss.

Each test sits exactly on a boundary (a rise equal to its threshold, a start
exactly ``academic_year_lead`` away, two cells with the same mean) where a
changed comparison or sort key shows; each case a change ``scripts/mutation``
found no test noticed.
"""

from __future__ import annotations

import datetime as dt

from tara.telemetry.windows import WindowStats, latency_bucket
from tara.triggers import comparisons, rules
from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, CellStats, Observations, Scope, TriggerResult
from tara.triggers.retirement import BASE_RETIREMENT

CFG = TriggerSettings()
HI_MATH = Scope(language="hi", subject="math")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
JUNE_1 = dt.datetime(2025, 6, 1, tzinfo=IST).timestamp()


def latencies(scale: float, n: int) -> WindowStats:
    """``n`` answers spread evenly over ``scale`` × (0.5 s .. 1.5 s)."""
    stats = WindowStats(requests=n)
    for i in range(n):
        stats.latency[latency_bucket(scale * (0.5 + i / n))] += 1
    return stats


def year(now: float, last_run: float | None, fired: bool, served: bool) -> TriggerResult:
    evidence = {"starts": "2025-06-01", "already_served": served}
    return TriggerResult(rules.ACADEMIC_YEAR, fired, EVERYTHING, 30.0, 30.0, "<=", evidence)


def test_academic_year_fires_exactly_the_lead_before_the_start() -> None:
    at = JUNE_1 - 30 * rules.DAY
    assert rules.academic_year(at, None, CFG) == year(at, None, True, False)
    assert rules.academic_year(at, at - 1, CFG) == year(at, at - 1, True, False)


def test_a_run_exactly_when_the_window_opened_serves_the_start() -> None:
    at = JUNE_1 - 30 * rules.DAY
    assert rules.academic_year(at, at, CFG) == year(at, at, False, True)


def test_latency_rising_exactly_by_its_threshold_does_not_fire() -> None:
    now, before = latencies(2.0, 100), latencies(1.0, 100)
    now_p, before_p = now.latency_quantile(0.95), before.latency_quantile(0.95)
    assert now_p is not None
    assert before_p is not None
    rise = now_p / before_p - 1.0
    exact = TriggerSettings(latency_increase=rise)
    evidence = {
        "quantile": 0.95,
        "seconds": now_p,
        "previous_seconds": before_p,
        "answers": 100,
        "previous_answers": 100,
    }
    want = TriggerResult(
        rules.LATENCY, False, HI_MATH, rise, rise, ">", evidence, True, sample=100, min_sample=100
    )
    assert rules.latency_degraded(HI_MATH, now, before, exact) == want
    lower = TriggerSettings(latency_increase=rise - 1e-9)
    assert rules.latency_degraded(HI_MATH, now, before, lower).fired


def test_latency_needs_the_minimum_answers_in_each_period() -> None:
    for now_n, before_n in ((99, 100), (100, 99)):
        r = rules.latency_degraded(HI_MATH, latencies(2.0, now_n), latencies(1.0, before_n), CFG)
        assert (r.fired, r.value, r.enough_data, r.sample) == (False, None, False, 99)


def test_gaps_with_the_same_mean_list_the_more_tagged_first() -> None:
    cells = {
        Scope(language="hi", subject="math", topic="a"): CellStats(
            ratings=30, rating_sum=90, flagged=3
        ),
        Scope(language="hi", subject="math", topic="b"): CellStats(
            ratings=30, rating_sum=90, flagged=9
        ),
        Scope(language="hi", subject="math", grade="7"): CellStats(
            ratings=40, rating_sum=140, flagged=8
        ),  # 3.5 and 20% exactly: not a gap
    }
    tagged = ["low rating", "tagged wrong/irrelevant"]
    evidence = {
        "gaps": [
            {"topic": "b", "rating_mean": 3.0, "flagged_share": 0.3, "ratings": 30,
             "reasons": tagged},
            {"topic": "a", "rating_mean": 3.0, "flagged_share": 0.1, "ratings": 30,
             "reasons": ["low rating"]},
        ],
        "cells_judged": 3,
        "cells_too_small": 0,
        "max_rating_mean": 3.5,
        "max_flagged_share": 0.2,
    }  # fmt: skip
    want = TriggerResult(rules.KNOWLEDGE_GAP, True, HI_MATH, 2.0, 1.0, ">=", evidence, True, 40, 30)
    assert rules.knowledge_gap(HI_MATH, cells, CFG) == want


def test_no_start_to_come_reports_nothing_to_judge() -> None:
    only_leap_days = TriggerSettings(academic_year_starts=["02-29"])  # 2025 and 2026: none
    at = dt.datetime(2025, 3, 1, tzinfo=IST).timestamp()
    assert rules.next_academic_year(at, only_leap_days) is None
    want = TriggerResult(rules.ACADEMIC_YEAR, False, EVERYTHING, None, 30.0, "<=", {}, False)
    assert rules.academic_year(at, None, only_leap_days) == want


def test_academic_year_days_are_rounded_to_hundredths() -> None:
    at = JUNE_1 - 10.123 * rules.DAY
    assert rules.academic_year(at, None, CFG).value == 10.12


def test_the_academic_year_follows_the_configured_clock_not_utc() -> None:
    # 1 June 19:00 UTC is already 2 June in India: this year's start has passed.
    at = dt.datetime(2025, 6, 1, 19, tzinfo=dt.UTC).timestamp()
    start = rules.next_academic_year(at, CFG)
    assert start == dt.datetime(2026, 6, 1, tzinfo=IST)
    assert rules.academic_year(at, None, CFG).evidence["starts"] == "2026-06-01"


def test_data_volume_at_the_top_of_the_optimal_range_is_optimal() -> None:
    r = rules.data_volume(HI_MATH, 10_000, 0.0, CFG)
    assert r.evidence == {
        "since": 0.0,
        "optimal_range": [5000, 10_000],
        "optimal": True,
        "share_of_optimal": 2.0,
    }


def gap_cell(ratings: int, rating_sum: int, flagged: int = 0) -> CellStats:
    return CellStats(requests=ratings, ratings=ratings, rating_sum=rating_sum, flagged=flagged)


def test_a_fine_cell_rated_lower_does_not_hide_a_tagged_gap_after_it() -> None:
    cells = {
        Scope(language="hi", subject="math", topic="fine"): gap_cell(30, 108),  # 3.6, untagged
        Scope(language="hi", subject="math", topic="tagged"): gap_cell(30, 120, flagged=9),
    }
    r = rules.knowledge_gap(HI_MATH, cells, CFG)
    assert r.evidence["gaps"] == [
        {"topic": "tagged", "rating_mean": 4.0, "flagged_share": 0.3, "ratings": 30,
         "reasons": ["tagged wrong/irrelevant"]},
    ]  # fmt: skip
    assert (r.fired, r.value, r.sample) == (True, 1.0, 30)


def test_knowledge_gap_without_cells_reports_a_sample_of_zero() -> None:
    evidence = {
        "gaps": [],
        "cells_judged": 0,
        "cells_too_small": 0,
        "max_rating_mean": 3.5,
        "max_flagged_share": 0.2,
    }
    want = TriggerResult(
        rules.KNOWLEDGE_GAP, False, HI_MATH, 0.0, 1.0, ">=", evidence, False, 0, 30
    )
    assert rules.knowledge_gap(HI_MATH, {}, CFG) == want


def test_language_rating_exactly_at_its_gap_does_not_fire() -> None:
    mine, others = WindowStats(ratings=[10, 10, 5, 3, 2]), WindowStats(ratings=[0, 2, 5, 13, 20])
    z = comparisons.critical_z(0.99, 2)
    lower = comparisons.mean_gap_lower(mine.ratings, others.ratings, z)
    assert lower > 1
    exact = TriggerSettings(language_min_rating_gap=lower)
    assert not rules.language_rating(HI_MATH, mine, others, z, exact).fired
    below = TriggerSettings(language_min_rating_gap=lower - 1e-9)
    assert rules.language_rating(HI_MATH, mine, others, z, below).fired


def test_language_complaints_exactly_at_their_gap_do_not_fire() -> None:
    mine = WindowStats(ratings=[0, 0, 10, 10, 10], tags={"language": 12})
    others = WindowStats(ratings=[0, 0, 10, 10, 10], tags={"language": 1})
    z = comparisons.critical_z(0.99, 2)
    lower = comparisons.share_gap_lower((12, 30), (1, 30), z)
    assert 0 < lower < 1
    exact = TriggerSettings(language_min_complaint_gap=lower)
    assert not rules.language_complaints(HI_MATH, mine, others, z, exact).fired
    below = TriggerSettings(language_min_complaint_gap=lower - 1e-9)
    assert rules.language_complaints(HI_MATH, mine, others, z, below).fired


RETIRING = TriggerSettings(base_model_retirements={"old-base": dt.date(2025, 6, 30)})


def retirement(**kwargs: object) -> TriggerResult:
    obs = Observations(now=JUNE_1, period=7 * rules.DAY, stable_models={"tutor": "old-base"})
    results = rules.evaluate(obs, RETIRING, subjects=(), languages=(), **kwargs)  # type: ignore[arg-type]
    return next(r for r in results if r.name == BASE_RETIREMENT)


def test_a_retirement_run_of_the_track_serves_its_retirement() -> None:
    r = retirement(retirement_runs={"tutor": JUNE_1 - rules.DAY, "quiz": JUNE_1})
    assert (r.fired, r.evidence["already_served"]) == (False, True)
    r = retirement(retirement_runs={"quiz": JUNE_1})
    assert (r.fired, r.evidence["already_served"]) == (True, False)


def test_without_a_successor_the_retirement_names_none() -> None:
    assert retirement().evidence["successor"] == ""
