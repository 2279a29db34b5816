"""Edges of single trigger rules that the tables and the golden check miss.

Each test sits exactly on a boundary (a rise equal to its threshold, a start
exactly ``academic_year_lead`` away, two cells with the same mean) where a
changed comparison or sort key shows; each case a change ``scripts/mutation``
found no test noticed.
"""

from __future__ import annotations

import datetime as dt

from tara.telemetry.windows import WindowStats, latency_bucket
from tara.triggers import rules
from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, CellStats, Scope, TriggerResult

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
