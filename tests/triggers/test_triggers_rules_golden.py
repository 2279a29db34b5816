"""Every number one check reports, pinned: :func:`tara.triggers.rules.evaluate` over a busy week.

``test_triggers_rules.py`` tables when each rule fires and
``test_triggers_rules_content.py`` what a rule reports at its minimums; this
runs every rule at once over observations built to sit on the edges (a
segment with exactly ``min_ratings`` ratings in both weeks, one a rating
short, tracks with exactly ``min_requests`` answers, cells at
``min_cell_ratings``, new subjects, languages and grades at
``min_new_requests``) and compares the whole report, evidence and windows
included, with ``rules_golden.json``. The table was computed once from this
code and checked by hand; a change in any rule's value, evidence, order,
threshold or window breaks it (each a change ``scripts/mutation`` found no
test noticed). If a rule is meant to change, recompute the table with
``python tests/triggers/test_triggers_rules_golden.py`` and review the diff.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from tara.telemetry.windows import WindowStats, latency_bucket
from tara.triggers import rules
from tara.triggers.config import TriggerSettings
from tara.triggers.model import CellStats, Observations, Scope

GOLDEN = Path(__file__).with_name("rules_golden.json")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
NOW = dt.datetime(2025, 5, 20, 12, tzinfo=IST).timestamp()
WEEK = 7 * 86_400.0
CFG = TriggerSettings(
    known_grades=["9", "10"],
    gap_tags=["wrong", "off"],
    base_model_retirements={"old-base": dt.date(2025, 6, 30)},
    retirement_lead=timedelta(days=60),
)


def ratings(*counts: int, tags: dict[str, int] | None = None, relevance: int = 0) -> WindowStats:
    """``counts[i]`` ratings of ``i + 1`` stars; ``relevance`` reports of 0.6 each."""
    return WindowStats(
        ratings=list(counts),
        tags=dict(tags or {}),
        relevance_count=relevance,
        relevance_sum=0.6 * relevance,
    )


def latencies(scale: float, n: int, requests: int = 0, retries: int = 0) -> WindowStats:
    """``n`` answers spread evenly over ``scale`` × (0.5 s .. 1.5 s)."""
    stats = WindowStats(requests=requests or n, user_retries=retries)
    for i in range(n):
        stats.latency[latency_bucket(scale * (0.5 + i / n))] += 1
    return stats


def with_latency(stats: WindowStats, scale: float, n: int, retries: int = 0) -> WindowStats:
    stats.merge(latencies(scale, n, retries=retries))
    return stats


def cell(ratings_n: int, rating_sum: int, flagged: int = 0, **extra: int) -> CellStats:
    return CellStats(
        requests=ratings_n + 20, ratings=ratings_n, rating_sum=rating_sum, flagged=flagged, **extra
    )


def busy_week() -> Observations:
    """Observations on the edges of every rule (comments: which edge)."""
    obs = Observations(now=NOW, period=WEEK)
    hi_math = Scope(language="hi", subject="math")
    en_math = Scope(language="en", subject="math")
    ta_math = Scope(language="ta", subject="math")
    hi_bio = Scope(language="hi", subject="biology")
    obs.current = {
        # 30 ratings (the minimum), 8 negative (5 is the minimum of rising events), 30 reports
        hi_math: with_latency(
            ratings(4, 4, 6, 8, 8, tags={"cultural": 5, "language": 5}, relevance=30),
            1.5, 100, retries=31,
        ),
        en_math: with_latency(ratings(0, 1, 5, 12, 22, tags={"language": 1}), 1.0, 120),
        ta_math: with_latency(ratings(1, 1, 4, 10, 14, relevance=29), 1.0, 99, retries=40),
        hi_bio: ratings(2, 2, 5, 10, 10, tags={"cultural": 2}),  # 29 ratings: one short
    }  # fmt: skip
    obs.previous = {
        hi_math: with_latency(ratings(2, 2, 6, 10, 10, tags={"cultural": 1}), 1.0, 100),
        en_math: with_latency(ratings(0, 2, 5, 12, 21), 1.0, 100),
        hi_bio: ratings(1, 1, 8, 10, 10, tags={"cultural": 2}),
        Scope(language="en", subject="history"): ratings(0, 0, 0, 10, 30),  # gone this week
    }
    obs.tracks_current = {"tutor": latencies(1.4, 100), "quiz": latencies(1.0, 150)}
    obs.tracks_previous = {"tutor": latencies(1.0, 100), "essay": latencies(1.0, 300)}
    obs.topics = {
        Scope(language="hi", subject="math", topic="algebra"): CellStats(
            requests=50, user_retries=16, ratings=30, rating_sum=100, flagged=7, derived=12
        ),
        Scope(language="hi", subject="math", topic="geometry"): CellStats(
            requests=49, user_retries=30, ratings=40, rating_sum=160, flagged=8
        ),
        Scope(language="hi", subject="math", topic="other"): CellStats(
            requests=80, user_retries=10, ratings=35, rating_sum=105, flagged=0,
            derived=80, evictions=4,
        ),
        Scope(language="en", subject="math", topic="algebra"): CellStats(
            requests=60, user_retries=18, ratings=29, rating_sum=29
        ),
    }  # fmt: skip
    obs.grades = {
        Scope(language="hi", subject="math", grade="10"): cell(30, 104, flagged=6),
        Scope(language="hi", subject="math", grade="9"): cell(31, 108, flagged=7, evictions=2),
        Scope(language="en", subject="math", grade="10"): cell(45, 200),
    }
    obs.high_quality = {hi_math: 1000, en_math: 999, Scope(track="tutor"): 7500}
    obs.volume_since = {hi_math: NOW - 30 * 86_400.0}
    obs.seen_current = {
        "subject": Counter({"math": 300, "biology": 20, "art": 19, "music": 25}),
        "language": Counter({"hi": 200, "en": 120, "mr": 20}),
        "grade": Counter({"10": 100, "9": 40, "11": 20, "12": 19}),
    }
    obs.seen_previous = {
        "subject": Counter({"math": 90, "music": 5}),  # 95 requests: too few to call new
        "language": Counter({"hi": 80, "en": 20}),  # 100: the minimum
        "grade": Counter({"10": 99, "11": 1}),  # 100, but "11" was seen
    }
    obs.stable_models = {"tutor": "old-base", "quiz": "new-base"}
    obs.listed_models = frozenset({"old-base", "new-base", "next-base"})
    return obs


def report() -> list[dict[str, Any]]:
    results = rules.evaluate(
        busy_week(),
        CFG,
        subjects=["math", "biology"],
        languages=["hi", "en"],
        academic_last_run=NOW - 86_400.0,
        successor_base_model="next-base",
        retirement_runs={"quiz": NOW - 86_400.0},
    )
    return [json.loads(json.dumps(r.as_json())) for r in results]


def test_a_busy_week_reports_exactly_the_golden_table() -> None:
    got = report()
    want = json.loads(GOLDEN.read_text())
    assert [(r["trigger"], r["scope"]) for r in got] == [(r["trigger"], r["scope"]) for r in want]
    for mine, golden in zip(got, want, strict=True):
        assert mine == golden


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(report(), indent=1, ensure_ascii=False) + "\n")
