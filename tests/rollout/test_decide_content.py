"""What ``step`` decides, to the letter: names, reasons, actors, times, stage numbers, alerts.

``test_decide.py`` tells the stories; these pin the content an operator, a
webhook or the alert log receives, where a changed word, an off-by-one stage
number, a lost actor or a missing rollout id would otherwise go unnoticed
(each one a change that ``scripts/mutation`` found no test noticed). The
expected analyses come from :func:`tara.rollout.analysis.analyse`, which has
its own tests; everything ``step`` adds is spelled out here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from test_decide import CFG, MISMATCH, SEGMENT, SRM, bad, counted, good, running, window

from tara.rollout.actions import Alert, Notify, PromoteToStable, Rollback, SetWeight
from tara.rollout.analysis import Analysis, analyse
from tara.rollout.config import RolloutSettings
from tara.rollout.decide import step
from tara.rollout.decisions import Decision, DecisionName
from tara.rollout.model import HISTORY_LIMIT, Phase, Rollout, pause
from tara.rollout.plan import plan_from_settings
from tara.rollout.report import compare
from tara.telemetry.windows import WindowStats

STAGE_1, STAGE_2 = plan_from_settings(CFG).stages


def notice(decision: Decision, phase: str, stage: int, weight: float) -> Notify:
    """The notice announcing ``decision``, with the rollout as it left it."""
    return Notify(
        "r1",
        "tara-tutor",
        decision,
        {
            "segment": "math:hi",
            "stable_model": "tara-stable",
            "candidate_model": "tara-ft-2",
            "phase": phase,
            "stage": stage,
            "stages": 2,
            "canary_weight": weight,
        },
    )


def analysis(canary: WindowStats, stable: WindowStats, cfg: RolloutSettings = CFG) -> Analysis:
    return analyse(canary, stable, cfg, STAGE_1)


def little() -> WindowStats:
    """Too few requests and ratings to judge: the analysis is inconclusive."""
    return window(30, 1, (1, 1, 3, 5, 5), 1.0)


def errors(n: int) -> Rollout:
    """A running rollout after ``n`` unreadable looks (``n`` under the pause limit)."""
    r = running()
    for i in range(1, n + 1):
        r, _ = step(r, None, good(), CFG, float(i))
    assert r.consecutive_errors == n
    return r


# -- errors ----------------------------------------------------------------------------


def test_an_unreadable_look_records_the_error_with_its_count() -> None:
    r, actions = step(running(), ConnectionError("redis down"), good(), CFG, 1.0)
    reason = "canary: stats unreadable: ConnectionError: redis down (1 in a row, pause at 3)"
    error = Decision(1.0, DecisionName.ERROR, reason, {"consecutive_errors": 1}, "controller")
    assert (r.history[-1], r.consecutive_errors) == (error, 1)
    assert actions == [notice(error, "progressing", 1, 0.1)]


def test_the_error_limit_pauses_by_the_controller_and_alerts_with_the_rollout_id() -> None:
    r, actions = step(errors(2), None, good(), CFG, 10.0)
    why = "stats unreadable 3 times in a row: canary: no stats"
    error = Decision(
        10.0,
        DecisionName.ERROR,
        "canary: no stats (3 in a row, pause at 3)",
        {"consecutive_errors": 3},
    )
    paused = Decision(10.0, DecisionName.PAUSE, why, {}, "controller")
    assert r.history[-2:] == (error, paused)
    assert actions == [
        notice(error, "progressing", 1, 0.1),
        notice(paused, "paused", 1, 0.1),
        Alert("r1", f"rollout r1 paused: {why}"),
    ]


# -- holding and waiting ---------------------------------------------------------------


def test_a_hold_is_the_latest_decision_with_time_and_analysis_but_not_history() -> None:
    start = running().history
    r, actions = step(running(), good(), good(), CFG, 50.0)
    hold = Decision(
        50.0,
        DecisionName.HOLD,
        "waiting for time 50s of 100s",
        {"analysis": analysis(good(), good())},
    )
    assert (r.last_decision, r.history) == (hold, start)
    assert actions == [notice(hold, "progressing", 1, 0.1)]


def test_waiting_names_everything_missing_in_one_reason() -> None:
    few = window(400, 1, (0, 0, 0, 10, 80), 1.0)
    stable = window(4000, 10, (0, 0, 0, 100, 800), 1.0)  # rated as often: no flag
    r, _ = step(running(), few, stable, CFG, 150.0)
    assert r.last_decision is not None
    assert (
        r.last_decision.reason == "waiting for canary requests 400 of 500, canary ratings 90 of 100"
    )


EXACT = RolloutSettings.model_validate(
    {
        "stages": [
            {"percent": 10, "duration": 100, "min_requests": 2000, "min_ratings": 1000},
            {"percent": 50, "duration": 200, "min_requests": 2000, "min_ratings": 1000},
        ]
    }
)
"""Stages whose minimums are exactly what :func:`good` holds (2000 requests, 1000 ratings)."""


def test_a_stage_passes_at_exactly_its_minimum_requests_and_ratings() -> None:
    canary = good()
    assert (canary.requests, canary.rating_count) == (2000, 1000)
    exact = replace(running(), plan=plan_from_settings(EXACT))
    assert (exact.stage.min_requests, exact.stage.min_ratings) == (2000, 1000)
    r, _ = step(exact, canary, good(), EXACT, 100.0)
    assert (r.stage_index, r.history[-1].decision) == (1, DecisionName.STAGE_PASSED)


def test_a_paused_rollout_holds_with_the_analysis_it_did_not_act_on() -> None:
    r = pause(running(), 10.0)[0]
    held, actions = step(r, good(), good(), CFG, 500.0)
    hold = Decision(
        500.0,
        DecisionName.HOLD,
        "paused; every check within its limit",
        {"analysis": analysis(good(), good())},
    )
    assert held.last_decision == hold
    assert actions == [notice(hold, "paused", 1, 0.1)]


# -- passing ---------------------------------------------------------------------------


def test_passing_a_stage_records_its_number_analysis_and_comparison() -> None:
    r, actions = step(running(), good(), good(), CFG, 100.0)
    passed = Decision(
        100.0,
        DecisionName.STAGE_PASSED,
        "stage 1 passed",
        {
            "analysis": analysis(good(), good()).to_dict(),
            "comparison": compare(good(), good()),
        },
    )
    assert r.history[-1] == passed
    assert actions == [
        SetWeight("r1", "tara-tutor", SEGMENT, 5000),
        notice(passed, "progressing", 2, 0.5),
    ]


SUCCESS = (
    "canary passed every stage; it is now stable\n"
    "rating: 4.23 vs 4.23 (+0.00)\n"
    "response time p95: +0.0% faster\n"
    "cultural complaints per 1000 answers: +0.00\n"
    "user retry rate: n/a lower\n"
    "tokens per answer: +0.0"
)


def test_passing_the_last_stage_is_recorded_as_succeed_with_the_report() -> None:
    r, _ = step(running(), good(), good(), CFG, 100.0)
    r, actions = step(r, good(), good(), CFG, 300.0)
    last = r.history[-1]
    assert (last.decision, last.actor, last.reason) == (DecisionName.SUCCEED, "controller", SUCCESS)
    assert last.evidence == {
        "analysis": analyse(good(), good(), CFG, STAGE_2).to_dict(),
        "comparison": compare(good(), good()),
    }
    assert actions == [
        PromoteToStable("r1", "tara-tutor", SEGMENT, "tara-ft-2"),
        notice(last, "succeeded", 2, 1.0),
    ]


def test_every_flag_of_the_rollout_ends_the_success_report_one_per_line() -> None:
    r, _ = step(running(), good(), good(), CFG, 100.0)
    older = tuple(Decision(t, DecisionName.FLAG, f"flag {t:g}", {}) for t in (60.0, 70.0))
    r = replace(r, history=(*r.history, *older))
    r, _ = step(r, good(), good(), CFG, 300.0)
    assert r.history[-1].reason == SUCCESS + "\nflag: flag 60\nflag: flag 70"
    assert r.history[-1].evidence["flags"] == ["flag 60", "flag 70"]


# -- stalls ----------------------------------------------------------------------------


def test_a_stall_alert_names_the_rollout_and_stage_and_resets_the_error_count() -> None:
    r, actions = step(errors(2), little(), good(), CFG, 300.0)
    why = analysis(little(), good()).reason
    message = f"rollout r1 stage 1 has not passed after 300s: {why}"
    stalled = Decision(
        300.0, DecisionName.STALLED, message, {"analysis": analysis(little(), good()).to_dict()}
    )
    assert (r.history[-1], r.consecutive_errors, r.stall_alerted) == (stalled, 0, True)
    assert actions == [notice(stalled, "progressing", 1, 0.1), Alert("r1", message)]


def test_a_stall_in_the_second_stage_says_stage_2() -> None:
    r, _ = step(running(), good(), good(), CFG, 100.0)
    r, actions = step(r, little(), good(), CFG, 700.0)
    why = analyse(little(), good(), CFG, STAGE_2).reason
    message = f"rollout r1 stage 2 has not passed after 600s: {why}"
    assert r.history[-1].reason == message
    assert actions[-1] == Alert("r1", message)


# -- rollback and flags ----------------------------------------------------------------


def test_a_rollback_gives_the_controller_as_actor_and_the_analysis_as_reason() -> None:
    r, actions = step(running(), bad(), good(), CFG, 1.0)
    found = analysis(bad(), good())
    back = Decision(
        1.0,
        DecisionName.ROLLBACK,
        found.reason,
        {
            "analysis": found.to_dict(),
            "comparison": compare(bad(), good()),
        },
        "controller",
    )
    assert r.history[-1] == back
    assert actions == [Rollback("r1", "tara-tutor", SEGMENT), notice(back, "rolled_back", 1, 0.0)]


FLAG = (
    "rating rates differ: canary students rate 7.1% of answers, stable students 50.3%; "
    "mean ratings may be biased; promotion waits for the configured evidence"
)


def test_a_flag_is_recorded_at_its_time_with_the_rating_rate_and_resets_the_error_count() -> None:
    stable = window(18000, 90, (180, 270, 900, 3600, 4050), 1.0)
    failing = window(2000, 600, (2, 3, 10, 40, 45), 1.0)  # 100 ratings of 1400 answers
    r, _ = step(errors(2), failing, stable, CFG, 50.0)
    found = analysis(failing, stable)
    parity = found.guard("rating_rate")
    assert parity is not None
    flag = Decision(50.0, DecisionName.FLAG, FLAG, {"rating_rate": parity.to_dict()})
    assert [d.decision for d in r.history[-2:]] == [DecisionName.FLAG, DecisionName.ROLLBACK]
    assert r.history[-2] == flag
    assert (r.phase, r.consecutive_errors) == (Phase.ROLLED_BACK, 0)  # the rollback keeps it


# -- sample ratio mismatch -------------------------------------------------------------


def mismatched() -> tuple[WindowStats, WindowStats]:
    stable = counted(window(18000, 90, (180, 270, 900, 3600, 4050), 1.0), 1900)
    return counted(good(), 100), stable


def test_a_mismatch_pauses_exactly_when_the_grace_period_ends() -> None:
    canary, stable = mismatched()
    before, _ = step(running(), canary, stable, SRM, 29.0)
    assert before.phase is Phase.PROGRESSING
    at, _ = step(running(), canary, stable, SRM, 30.0)
    assert (at.phase, at.history[-1].reason) == (Phase.PAUSED, MISMATCH)


def test_a_paused_mismatch_holds_at_its_time_with_the_analysis() -> None:
    canary, stable = mismatched()
    paused, _ = step(running(), canary, stable, SRM, 150.0)
    held, actions = step(paused, canary, stable, SRM, 160.0)
    hold = Decision(
        160.0, DecisionName.HOLD, f"paused; {MISMATCH}", {"analysis": analysis(canary, stable, SRM)}
    )
    assert held.last_decision == hold
    assert actions == [notice(hold, "paused", 1, 0.1)]


def test_a_mismatch_pauses_when_the_bounded_history_has_lost_the_stage_start() -> None:
    """Past :data:`HISTORY_LIMIT` decisions the stage's ``start`` is gone; no resume is known."""
    lost = tuple(Decision(float(i), DecisionName.ERROR, "e", {}) for i in range(HISTORY_LIMIT))
    r = replace(running(), history=lost)
    canary, stable = mismatched()
    paused, _ = step(r, canary, stable, SRM, 150.0)
    assert (paused.phase, paused.history[-1].reason) == (Phase.PAUSED, MISMATCH)


def test_notices_carry_what_the_webhook_body_shows() -> None:
    r, actions = step(running(), good(), good(), CFG, 100.0)
    body: dict[str, Any] = actions[1].body()  # type: ignore[union-attr]
    assert {
        k: body[k] for k in ("event", "rollout_id", "stage", "decision", "reason", "actor")
    } == {
        "event": "promoted",
        "rollout_id": "r1",
        "stage": 2,
        "decision": "advance",
        "reason": "stage 1 passed",
        "actor": "controller",
    }
    assert r.stage_index == 1
