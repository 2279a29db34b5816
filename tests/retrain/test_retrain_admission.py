"""``admit`` as tables: which firings start a run, and why the others do not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tara.retrain.admission import Limits, admit, high_quality, segment_of
from tara.retrain.config import RetrainSettings, RuleAction
from tara.retrain.run import Run, RunState
from tara.rollout.routing import Segment
from tara.triggers.model import EVERYTHING, Scope, TriggerResult
from tara.triggers.state import TriggerState

DAY = 86_400.0
NOW = 100 * DAY
HI_MATH = Scope(language="hi", subject="math")
EN_PHYSICS = Scope(language="en", subject="physics")
TA_MATH = Scope(language="ta", subject="math")
SETTINGS = RetrainSettings(min_training_examples=1000, max_open_runs=2)
LIMITS = Limits(cooldown=14 * DAY, volume_lookback=90 * DAY, track="tara-tutor", min_rating=4)


def fired(name: str, scope: Scope, value: float = 1.0, *, fires: bool = True) -> TriggerResult:
    return TriggerResult(name, fires, scope, value, 3.5, "<", {"ratings": 40})


def volume(scope: Scope, count: int) -> TriggerResult:
    return TriggerResult("data_volume", count >= 1000, scope, float(count), 1000.0, ">=")


def stored_run(segment: Segment, state: RunState, created: float, **changes: Any) -> Run:
    base = Run("ft-old", "tara-tutor", segment, created, created - DAY, created, state=state)
    return replace(base, **changes)


def test_a_quality_rule_with_enough_data_starts_one_run_keeping_every_firing() -> None:
    results = [
        volume(HI_MATH, 1200),
        fired("low_rating", HI_MATH, 2.8),
        fired("retry_rate", HI_MATH, 0.4),
        fired("low_rating", EN_PHYSICS, 3.9, fires=False),
    ]
    admission = admit(results, [], TriggerState(), SETTINGS, LIMITS, NOW)
    [decision] = admission.decisions
    assert decision.start
    assert decision.segment == Segment("math", "hi")
    assert decision.track == "tara-tutor"
    assert [f.name for f in decision.firings] == ["data_volume", "low_rating", "retry_rate"]
    assert decision.high_quality == 1200
    assert decision.data_since == NOW - 90 * DAY
    assert "1,200 interactions rated ≥ 4" in decision.reason
    assert admission.alerts == []


REFUSALS: list[tuple[str, list[Run], TriggerState, int, str]] = [
    ("small sample", [], TriggerState(), 999, "too little data: 999 of 1,000"),
    (
        "open run on the segment",
        [stored_run(Segment("math", "hi"), RunState.TRAINING, NOW - DAY, id="ft-a")],
        TriggerState(),
        5000,
        "run ft-a is open on math:hi (training)",
    ),
    (
        "open run on an overlapping segment",
        [stored_run(Segment(None, "hi"), RunState.CANARY, NOW - DAY, id="ft-b")],
        TriggerState(),
        5000,
        "run ft-b is open on *:hi (canary)",
    ),
    (
        "cooldown after a run started",
        [],
        TriggerState(runs={HI_MATH.key: {"low_rating": NOW - 3 * DAY}}),
        5000,
        "cooling down for 11d after its last run",
    ),
    (
        "cooldown after a rolled-back run ended",
        [
            stored_run(
                Segment("math", "hi"),
                RunState.ROLLED_BACK,
                NOW - 30 * DAY,
                ended_at=NOW - 2 * DAY,
            )
        ],
        TriggerState(),
        5000,
        "cooling down for 12d after its last run",
    ),
    (
        "too many open runs",
        [
            stored_run(Segment("math", "ta"), RunState.TRAINING, NOW, id="ft-1"),
            stored_run(Segment("physics", "en"), RunState.PENDING, NOW, id="ft-2"),
        ],
        TriggerState(),
        5000,
        "2 runs are open (retrain.max_open_runs is 2)",
    ),
]


@pytest.mark.parametrize(
    ("runs", "times", "have", "why"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_a_firing_that_may_not_start_a_run_says_why(
    runs: list[Run], times: TriggerState, have: int, why: str
) -> None:
    results = [volume(HI_MATH, have), fired("low_rating", HI_MATH, 2.8)]
    [decision] = admit(results, runs, times, SETTINGS, LIMITS, NOW).decisions
    assert not decision.start
    assert decision.reason.startswith(why), decision.reason


def test_cooldown_ends_and_the_next_run_reads_data_since_the_last_one() -> None:
    last = stored_run(
        Segment("math", "hi"), RunState.PROMOTED, NOW - 20 * DAY, ended_at=NOW - 15 * DAY
    )
    times = TriggerState(runs={HI_MATH.key: {"low_rating": last.created_at}})
    results = [volume(HI_MATH, 1500), fired("low_rating", HI_MATH, 2.8)]
    [decision] = admit(results, [last], times, SETTINGS, LIMITS, NOW).decisions
    assert decision.start
    assert decision.data_since == last.data_until


def test_max_open_runs_counts_the_runs_this_look_starts() -> None:
    results = [
        volume(HI_MATH, 2000),
        volume(TA_MATH, 2000),
        volume(EN_PHYSICS, 2000),
        fired("low_rating", HI_MATH),
        fired("low_rating", TA_MATH),
        fired("low_rating", EN_PHYSICS),
    ]
    decisions = admit(results, [], TriggerState(), SETTINGS, LIMITS, NOW).decisions
    assert [(d.segment.label, d.start) for d in decisions] == [
        ("math:hi", True),
        ("math:ta", True),
        ("physics:en", False),
    ]
    assert "2 runs are open" in decisions[2].reason


def test_business_rules_and_unsegmented_scopes_only_alert() -> None:
    results = [
        volume(HI_MATH, 5000),
        fired("new_grade", Scope(grade="12")),
        fired("academic_year", EVERYTHING),
        fired("latency_p95", Scope(track="tara-tutor")),
        fired("new_subject", Scope(subject="biology")),
    ]
    admission = admit(results, [], TriggerState(), SETTINGS, LIMITS, NOW)
    assert [r.name for r in admission.alerts] == [
        "new_grade",
        "academic_year",
        "latency_p95",
        "new_subject",
    ]
    assert [d.segment.label for d in admission.decisions] == ["math:hi"]  # data_volume itself


def test_a_rule_set_to_alert_starts_nothing_and_one_set_to_start_does() -> None:
    results = [volume(HI_MATH, 5000), fired("low_rating", HI_MATH)]
    quiet = RetrainSettings(
        rule_actions={"low_rating": RuleAction.ALERT, "data_volume": RuleAction.ALERT}
    )
    admission = admit(results, [], TriggerState(), quiet, LIMITS, NOW)
    assert admission.decisions == []
    assert [r.name for r in admission.alerts] == ["data_volume", "low_rating"]
    loud = RetrainSettings(rule_actions={"new_language": RuleAction.START_RUN})
    assert loud.action("new_language") is RuleAction.START_RUN
    assert loud.action("academic_year") is RuleAction.ALERT  # the other defaults stay
    assert loud.action("some_new_rule") is RuleAction.START_RUN
    assert RetrainSettings().action("base_model_retirement") is RuleAction.ALERT


def test_a_language_segment_counts_the_data_of_each_of_its_subjects() -> None:
    hindi = Scope(language="hi")
    results = [
        volume(HI_MATH, 600),
        volume(Scope(language="hi", subject="physics"), 500),
        volume(TA_MATH, 900),
        fired("language_accuracy", hindi),
    ]
    [decision] = admit(results, [], TriggerState(), SETTINGS, LIMITS, NOW).decisions
    assert decision.segment == Segment(None, "hi")
    assert decision.high_quality == 1100
    assert decision.start
    assert high_quality(results)[Segment("math", "ta")] == 900


def test_segment_of_a_scope() -> None:
    assert segment_of(HI_MATH) == Segment("math", "hi")
    assert segment_of(Scope(track="t", language="hi")) == Segment(None, "hi")
    assert segment_of(Scope(track="t")) is None
    assert segment_of(Scope(grade="9")) is None
    assert segment_of(Scope(subject="a:b")) is None
