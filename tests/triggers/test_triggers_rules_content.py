"""What the trigger rules report, to the letter, where a swapped threshold would hide.

``test_triggers_rules.py`` tables when each rule fires; these pin what the
report shows for every trigger: its threshold, comparison, minimum sample and
note. Settings with a distinct value each make a threshold read from the wrong
setting show (each case a change ``scripts/mutation`` found no test noticed).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tara.telemetry.windows import WindowStats
from tara.triggers import rules
from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, Observations, Scope, Window

DISTINCT = TriggerSettings(
    min_high_quality=1001,
    max_rating_mean=3.4,
    min_ratings=31,
    negative_increase=0.21,
    min_relevance=0.71,
    min_relevance_reports=32,
    cultural_increase=0.05,
    latency_increase=0.16,
    min_requests=101,
    max_retry_rate=0.31,
    min_topic_requests=51,
    min_cell_ratings=33,
    language_min_rating_gap=0.22,
    language_min_complaint_gap=0.023,
    min_new_requests=21,
    retirement_lead=timedelta(days=61),
)
NO_TRAFFIC = {
    rules.DATA_VOLUME: (1001.0, ">=", None),
    rules.LOW_RATING: (3.4, "<", 31),
    rules.NEGATIVE_FEEDBACK: (0.21, ">", 31),
    rules.LOW_RELEVANCE: (0.71, "<", 32),
    rules.CULTURAL_COMPLAINTS: (0.05, ">", 31),
    rules.LATENCY: (0.16, ">", 101),
    rules.RETRY_RATE: (0.31, ">", 101),
    rules.TOPIC_RETRY_RATE: (0.31, ">", 51),
    rules.KNOWLEDGE_GAP: (1.0, ">=", 33),
    rules.LANGUAGE_RATING: (0.22, ">", 31),
    rules.LANGUAGE_COMPLAINTS: (0.023, ">", 31),
    rules.NEW_SUBJECT: (21.0, ">=", 21),
    rules.NEW_LANGUAGE: (21.0, ">=", 21),
    rules.NEW_GRADE: (21.0, ">=", 21),
    rules.BASE_RETIREMENT: (61.0, "<=", None),
}


@pytest.mark.parametrize("name", sorted(NO_TRAFFIC))
def test_a_trigger_without_traffic_reports_its_threshold_and_minimum(name: str) -> None:
    row = rules._no_traffic(name, DISTINCT)
    threshold, op, minimum = NO_TRAFFIC[name]
    note = "no track to look at" if name == rules.BASE_RETIREMENT else "no traffic in the period"
    assert row == rules.TriggerResult(
        name, False, EVERYTHING, None, threshold, op, {"note": note}, False, 0, minimum
    )


def test_a_check_without_traffic_reports_every_trigger_once_in_order() -> None:
    now, period = 1_750_000_000.0, 7 * 86_400.0
    results = rules.evaluate(
        Observations(now=now, period=period), DISTINCT, subjects=(), languages=()
    )
    assert [r.name for r in results] == list(rules.TRIGGERS)
    by_name = {r.name: r for r in results}
    for name, (threshold, op, minimum) in NO_TRAFFIC.items():
        row = by_name[name]
        assert (row.fired, row.value, row.threshold, row.op, row.min_sample, row.sample) == (
            False,
            None,
            threshold,
            op,
            minimum,
            0,
        ), name
    assert by_name[rules.LOW_RATING].window == Window(now - period, now)
    assert by_name[rules.NEGATIVE_FEEDBACK].window == Window(now - period, now, now - 2 * period)
    assert by_name[rules.DATA_VOLUME].window == Window(now, now)


# -- the language comparisons ----------------------------------------------------------

HI_MATH = Scope(language="hi", subject="math")
AT_MINIMUM = DISTINCT.model_copy(update={"min_rising_events": 3})
"""Here 31 ratings (``min_ratings``) and 3 complaints (``min_rising_events``): just enough."""
MINE = WindowStats(ratings=[10, 5, 6, 5, 5], tags={"language": 3})  # mean 83/31
OTHERS = WindowStats(ratings=[4, 6, 12, 20, 20])  # mean 232/62, no complaint tag at all


def test_language_complaints_at_the_minimums_report_every_number() -> None:
    got = rules.language_complaints(HI_MATH, MINE, OTHERS, 1.23456, AT_MINIMUM)
    assert got == rules.TriggerResult(
        rules.LANGUAGE_COMPLAINTS,
        True,
        HI_MATH,
        0.0433,
        0.023,
        ">",
        {
            "complaints": 3,
            "others_complaints": 0,
            "share": 0.0968,
            "others_share": 0.0,
            "ratings": 31,
            "others_ratings": 62,
            "z": 1.235,
        },
        True,
        sample=31,
        min_sample=31,
    )


def test_language_complaints_below_the_gap_report_the_others_share() -> None:
    others = WindowStats(ratings=[4, 6, 12, 20, 20], tags={"language": 1})
    got = rules.language_complaints(HI_MATH, MINE, others, 1.23456, AT_MINIMUM)
    assert (got.fired, got.value, got.evidence["others_share"]) == (False, 0.0218, 0.0161)


def test_language_complaints_need_the_minimum_events() -> None:
    more = AT_MINIMUM.model_copy(update={"min_rising_events": 4})
    got = rules.language_complaints(HI_MATH, MINE, OTHERS, 1.23456, more)
    assert (got.fired, got.value) == (False, 0.0433)


def test_language_rating_at_the_minimum_reports_every_number() -> None:
    got = rules.language_rating(HI_MATH, MINE, OTHERS, 1.23456, AT_MINIMUM)
    assert got == rules.TriggerResult(
        rules.LANGUAGE_RATING,
        True,
        HI_MATH,
        0.6839,
        0.22,
        ">",
        {
            "rating_mean": 2.6774,
            "others_rating_mean": 3.7419,
            "ratings": 31,
            "others_ratings": 62,
            "z": 1.235,
        },
        True,
        sample=31,
        min_sample=31,
    )


def test_language_rules_without_enough_ratings_report_no_value() -> None:
    few = WindowStats(ratings=[10, 5, 6, 5, 4], tags={"language": 3})  # 30 ratings
    for rule in (rules.language_rating, rules.language_complaints):
        got = rule(HI_MATH, few, OTHERS, 1.23456, AT_MINIMUM)
        assert (got.fired, got.value, got.enough_data, got.sample) == (False, None, False, 30)
