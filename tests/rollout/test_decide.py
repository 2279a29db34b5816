"""The pure step function and the manual transitions, as tables and short stories."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tara.rollout.actions import Alert, Notify, PromoteToStable, Rollback, SetWeight
from tara.rollout.config import RolloutSettings
from tara.rollout.decide import flags, step
from tara.rollout.model import (
    HISTORY_LIMIT,
    Decision,
    Phase,
    Rollout,
    TransitionError,
    abort,
    pause,
    promote,
    resume,
    rollback,
    start,
)
from tara.rollout.plan import plan_from_settings
from tara.rollout.routing import Segment
from tara.telemetry.windows import WindowStats, latency_bucket

CFG = RolloutSettings.model_validate(
    {
        "stages": [
            {"percent": 10, "duration": 100, "min_requests": 500, "min_ratings": 100},
            {"percent": 50, "duration": 200, "min_requests": 500, "min_ratings": 100},
        ],
        "interval": 10,
        "intensive_interval": 5,
    }
)
PLAN = plan_from_settings(CFG)
SEGMENT = Segment(subject="math", language="hi")


def fresh() -> Rollout:
    return Rollout("r1", "tara-tutor", SEGMENT, "tara-stable", "tara-ft-2", "salt", PLAN)


def running(now: float = 0.0) -> Rollout:
    return start(fresh(), now)[0]


def window(requests: int, errors: int, ratings: tuple[int, ...], seconds: float) -> WindowStats:
    w = WindowStats(requests=requests, errors={"upstream": errors} if errors else {})
    w.ratings = list(ratings)
    w.latency[latency_bucket(seconds)] += requests - errors
    w.latency[latency_bucket(seconds * 1.5)] += (requests - errors) // 100
    return w


def good() -> WindowStats:
    return window(2000, 10, (20, 30, 100, 400, 450), 1.0)


def bad() -> WindowStats:
    return window(2000, 10, (300, 300, 300, 100, 50), 1.0)


def kinds(actions: list[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def counted_only(actions: list[object]) -> list[str]:
    """The decisions of ``actions`` that are counted but announced to nobody (holds, errors)."""
    return [a.decision.decision for a in actions if isinstance(a, Notify) and a.event is None]


def test_step_starts_a_pending_rollout() -> None:
    r, actions = step(fresh(), None, None, CFG, 5.0)
    assert r.phase is Phase.PROGRESSING
    assert r.stage_started_at == 5.0
    assert actions[0] == SetWeight("r1", "tara-tutor", SEGMENT, 1000)
    assert r.history[-1].decision == "start"


def test_pass_before_the_minimum_time_holds() -> None:
    r, actions = step(running(), good(), good(), CFG, 50.0)
    assert (r.phase, r.stage_index, counted_only(actions)) == (Phase.PROGRESSING, 0, ["hold"])
    assert kinds(actions) == ["Notify"]
    assert r.last_decision is not None
    assert r.last_decision.reason.startswith("waiting for time 50s of 100s")


def test_pass_with_too_few_samples_holds() -> None:
    few = window(400, 1, (0, 0, 0, 10, 80), 1.0)
    r, _ = step(running(), few, good(), CFG, 150.0)
    assert r.stage_index == 0
    assert r.last_decision is not None
    assert "canary requests 400 of 500" in r.last_decision.reason
    assert "canary ratings 90 of 100" in r.last_decision.reason


def test_pass_after_the_minimum_advances() -> None:
    r, actions = step(running(), good(), good(), CFG, 100.0)
    assert (r.stage_index, r.stage_started_at, r.stage_elapsed_before) == (1, 100.0, 0.0)
    assert actions[0] == SetWeight("r1", "tara-tutor", SEGMENT, 5000)
    assert isinstance(actions[1], Notify)
    assert r.history[-1].decision == "advance"


def test_passing_the_last_stage_makes_the_canary_stable_with_a_report() -> None:
    r, _ = step(running(), good(), good(), CFG, 100.0)
    r, actions = step(r, good(), good(), CFG, 300.0)
    assert r.phase is Phase.SUCCEEDED
    assert r.weight_bp == 10_000
    assert actions[0] == PromoteToStable("r1", "tara-tutor", SEGMENT, "tara-ft-2")
    assert isinstance(actions[1], Notify)
    assert actions[1].event == "succeeded"
    assert "rating:" in actions[1].message
    assert "comparison" in actions[1].data


def test_fail_rolls_back_at_once() -> None:
    r, actions = step(running(), bad(), good(), CFG, 1.0)
    assert r.phase is Phase.ROLLED_BACK
    assert r.weight_bp == 0
    assert actions[0] == Rollback("r1", "tara-tutor", SEGMENT)
    evidence = r.history[-1].evidence
    assert evidence["analysis"]["outcome"] == "fail"
    assert evidence["comparison"]["rating_improvement"] < -1


def test_inconclusive_holds() -> None:
    little = window(30, 1, (1, 1, 3, 5, 5), 1.0)
    r, actions = step(running(), little, good(), CFG, 150.0)
    assert (r.phase, r.stage_index, counted_only(actions)) == (Phase.PROGRESSING, 0, ["hold"])
    assert kinds(actions) == ["Notify"]


def test_errors_pause_and_alert_after_the_limit_and_never_roll_back() -> None:
    r = running()
    for i in range(1, CFG.max_consecutive_errors):
        r, actions = step(r, ConnectionError("redis down"), good(), CFG, float(i))
        assert (r.phase, r.consecutive_errors) == (Phase.PROGRESSING, i)
        assert (kinds(actions), counted_only(actions)) == (["Notify"], ["error"])
    r, actions = step(r, None, good(), CFG, 10.0)
    assert r.phase is Phase.PAUSED
    assert kinds(actions) == ["Notify", "Notify", "Alert"]  # the error, the pause, the alert
    assert counted_only(actions) == ["error"]
    assert "stats unreadable 3 times in a row" in actions[2].message  # type: ignore[union-attr]
    r, actions = step(r, None, None, CFG, 20.0)
    assert (r.phase, r.consecutive_errors, counted_only(actions)) == (Phase.PAUSED, 4, ["error"])


def test_a_readable_look_resets_the_error_count() -> None:
    r, _ = step(running(), None, good(), CFG, 1.0)
    r, _ = step(r, good(), good(), CFG, 2.0)
    assert r.consecutive_errors == 0


def test_paused_rollout_still_rolls_back_on_failure_but_never_advances() -> None:
    r = pause(running(), 10.0)[0]
    held, actions = step(r, good(), good(), CFG, 500.0)
    assert (held.phase, held.stage_index, counted_only(actions)) == (Phase.PAUSED, 0, ["hold"])
    failed, actions = step(r, bad(), good(), CFG, 500.0)
    assert failed.phase is Phase.ROLLED_BACK
    assert kinds(actions) == ["Rollback", "Notify"]


def test_a_stalled_stage_alerts_once() -> None:
    little = window(30, 1, (1, 1, 3, 5, 5), 1.0)
    r, actions = step(running(), little, good(), CFG, 299.0)
    assert counted_only(actions) == ["hold"]
    r, actions = step(r, little, good(), CFG, 300.0)
    assert kinds(actions) == ["Notify", "Alert"]
    assert actions[0].event == "stalled"  # type: ignore[union-attr]
    assert r.stall_alerted
    r, actions = step(r, little, good(), CFG, 400.0)
    assert counted_only(actions) == ["hold"]


def test_terminal_rollouts_are_left_alone() -> None:
    done = rollback(running(), 1.0)[0]
    assert step(done, bad(), good(), CFG, 2.0) == (done, [])


def test_stage_time_survives_pause_and_resume() -> None:
    r = running(0.0)
    r = pause(r, 60.0)[0]
    assert r.stage_elapsed(1000.0) == 60.0
    r = resume(r, 500.0)[0]
    assert r.stage_elapsed(530.0) == 90.0
    held, _ = step(r, good(), good(), CFG, 530.0)
    assert held.stage_index == 0
    moved, _ = step(r, good(), good(), CFG, 540.0)
    assert moved.stage_index == 1


@pytest.mark.parametrize(
    ("op", "phase", "message"),
    [
        (promote, Phase.ROLLED_BACK, "cannot promote: rollout r1 is rolled_back"),
        (promote, Phase.PENDING, "cannot promote: rollout r1 is pending"),
        (pause, Phase.PAUSED, "cannot pause: rollout r1 is paused"),
        (pause, Phase.SUCCEEDED, "cannot pause: rollout r1 is succeeded"),
        (resume, Phase.PROGRESSING, "cannot resume: rollout r1 is progressing"),
        (rollback, Phase.ABORTED, "cannot roll back: rollout r1 is aborted"),
        (abort, Phase.SUCCEEDED, "cannot abort: rollout r1 is succeeded"),
        (start, Phase.PROGRESSING, "cannot start: rollout r1 is progressing"),
    ],
)
def test_invalid_transitions_say_why(op: object, phase: Phase, message: str) -> None:
    rollout = Rollout("r1", "t", Segment(), "a", "b", "s", PLAN, phase=phase)
    with pytest.raises(TransitionError, match=f"^{message}$"):
        op(rollout, 1.0)  # type: ignore[operator]


def test_manual_promote_moves_to_the_next_stage_now() -> None:
    r, actions = promote(running(), 3.0, actor="asha", reason="urgent fix")
    assert (r.stage_index, r.phase) == (1, Phase.PROGRESSING)
    assert r.history[-1] == Decision(3.0, "promote", "promoted by hand: urgent fix", {}, "asha")
    assert actions[0] == SetWeight("r1", "tara-tutor", SEGMENT, 5000)
    r, actions = promote(r, 4.0)
    assert r.phase is Phase.SUCCEEDED
    assert isinstance(actions[0], PromoteToStable)


def test_manual_promote_of_a_paused_rollout_resumes_it() -> None:
    r = pause(running(), 3.0)[0]
    assert promote(r, 4.0)[0].phase is Phase.PROGRESSING


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED])
def test_rollback_and_abort_route_everyone_to_stable(phase: Phase) -> None:
    r = Rollout("r1", "t", Segment(), "a", "b", "s", PLAN, phase=phase)
    back, actions = rollback(r, 2.0, reason="bad answers")
    assert (back.phase, back.weight_bp, actions[0]) == (
        Phase.ROLLED_BACK,
        0,
        Rollback("r1", "t", Segment()),
    )
    gone, actions = abort(r, 2.0)
    assert (gone.phase, actions[0]) == (Phase.ABORTED, SetWeight("r1", "t", Segment(), 0))


def test_weight_follows_the_phase() -> None:
    assert fresh().weight_bp == 0
    assert running().weight_bp == 1000
    assert pause(running(), 1.0)[0].weight_bp == 1000


def test_rollout_round_trips_through_json() -> None:
    r, _ = step(running(), good(), good(), CFG, 100.0)
    r, _ = step(r, None, good(), CFG, 110.0)
    r = pause(r, 120.0)[0]
    data = json.loads(json.dumps(r.to_dict()))
    again = Rollout.from_dict(data)
    assert again.to_dict() == data
    assert again.segment == SEGMENT
    assert again.plan == PLAN
    assert [d.decision for d in again.history] == ["start", "advance", "error", "pause"]


def test_hold_decisions_serialise_their_analysis() -> None:
    r, _ = step(running(), good(), good(), CFG, 50.0)
    assert r.last_decision is not None
    data = json.loads(json.dumps(r.to_dict()))
    assert data["last_decision"]["evidence"]["analysis"]["outcome"] == "pass"
    assert data["history"][-1]["decision"] == "start"


def test_history_is_bounded() -> None:
    r = running()
    for i in range(HISTORY_LIMIT + 10):
        r, _ = step(r, None, None, CFG, float(i))
    assert len(r.history) == HISTORY_LIMIT
    assert r.history[-1].decision == "error"


def test_alert_names_the_rollout() -> None:
    alert = Alert("r1", "paused")
    assert (alert.rollout_id, alert.message) == ("r1", "paused")


# -- evidence that can lie ------------------------------------------------------------
def counted(w: WindowStats, students: int) -> WindowStats:
    """``w`` with a distinct-student count, as the window stores report it."""
    w.students = students
    return w


MISMATCH = (
    "sample ratio mismatch: canary has 100 of 2000 distinct students (5.0%) and 10.0% of "
    "20000 requests for a weight of 10%; no decision on this data until an operator resumes "
    "or rolls back"
)


SRM = CFG.model_copy(update={"srm_grace": timedelta(seconds=30)})
"""Stages of 100 s: a mismatch may pause after 30 s of a stage."""


def test_a_mismatch_in_the_first_moments_of_a_stage_is_not_acted_on() -> None:
    stable = counted(window(18000, 90, (180, 270, 900, 3600, 4050), 1.0), 1900)
    r, _ = step(running(), counted(good(), 100), stable, SRM, 20.0)
    assert r.phase is Phase.PROGRESSING


def test_a_sample_ratio_mismatch_pauses_with_the_numbers_and_decides_nothing() -> None:
    stable = counted(window(18000, 90, (180, 270, 900, 3600, 4050), 1.0), 1900)
    for canary in (good(), bad()):  # a failing canary is not rolled back on that data either
        r, actions = step(running(), counted(canary, 100), stable, SRM, 150.0)
        assert (r.phase, r.stage_index) == (Phase.PAUSED, 0)
        d = r.history[-1]
        assert (d.decision, d.actor, d.reason) == ("pause", "controller", MISMATCH)
        assert d.evidence["sample_ratio"]["evidence"]["canary_student_share"] == 0.05
        assert kinds(actions) == ["Notify", "Alert"]
        assert actions[1] == Alert("r1", f"rollout r1 paused in stage 1: {MISMATCH}")
    held, actions = step(r, counted(bad(), 100), stable, SRM, 160.0)
    assert (held.phase, kinds(actions), counted_only(actions)) == (
        Phase.PAUSED,
        ["Notify"],
        ["hold"],
    )
    assert held.last_decision is not None
    assert held.last_decision.reason == f"paused; {MISMATCH}"


def test_after_an_operator_resumes_a_mismatch_the_stage_decides_again() -> None:
    stable = counted(window(18000, 90, (180, 270, 900, 3600, 4050), 1.0), 1900)
    paused, _ = step(running(), counted(good(), 100), stable, SRM, 50.0)
    resumed, _ = resume(paused, 60.0, actor="asha", reason="routing fixed, data understood")
    back, _ = step(resumed, counted(bad(), 100), stable, SRM, 70.0)
    assert back.phase is Phase.ROLLED_BACK
    assert (back.history[-1].decision, back.history[-1].actor) == ("rollback", "controller")
    moved, _ = step(resumed, counted(good(), 100), stable, SRM, 200.0)
    assert moved.stage_index == 1
    again, _ = step(moved, counted(good(), 100), stable, SRM, 240.0)
    assert (again.phase, again.history[-1].decision) == (Phase.PAUSED, "pause")  # a new stage


def test_stats_without_student_counts_are_not_checked_for_a_mismatch() -> None:
    r, _ = step(running(), good(), good(), CFG, 100.0)
    assert (r.phase, r.stage_index) == (Phase.PROGRESSING, 1)


FLAG = (
    "rating rates differ: canary students rate 5.0% of answers, stable students 50.3%; "
    "mean ratings may be biased; promotion waits for the configured evidence"
)


def test_unequal_rating_rates_flag_the_rollout_once_and_wait_for_the_evidence() -> None:
    stable = window(18000, 90, (180, 270, 900, 3600, 4050), 1.0)
    few = window(1990, 10, (0, 0, 9, 36, 54), 1.0)  # 99 ratings (5% of answers), rated well
    r, actions = step(running(), few, stable, CFG, 150.0)
    d = r.history[-1]
    assert (d.decision, d.actor, d.reason) == ("flag", "controller", FLAG)
    assert kinds(actions) == ["Notify", "Alert", "Notify"]  # the flag, its alert, the hold
    assert actions[0].event == "flagged"  # type: ignore[union-attr]
    assert actions[1] == Alert("r1", f"rollout r1 flagged: {d.reason}")
    assert r.last_decision is not None
    assert (r.last_decision.decision, r.last_decision.reason) == (
        "hold",
        "waiting for canary ratings 99 of 100 (flagged: rating rates differ)",
    )
    assert flags(r) == [d.reason]
    r, actions = step(r, few, stable, CFG, 160.0)
    assert counted_only(actions) == ["hold"]
    assert [x.decision for x in r.history].count("flag") == 1


def test_a_flag_travels_with_promotion_into_the_success_report() -> None:
    stable = window(18000, 90, (180, 270, 900, 3600, 4050), 1.0)
    enough = window(4000, 20, (4, 6, 20, 80, 90), 1.0)  # 200 ratings, 5% of answers
    r, _ = step(running(), enough, stable, CFG, 100.0)
    assert (r.stage_index, [d.decision for d in r.history]) == (1, ["start", "flag", "advance"])
    assert r.history[-1].evidence["flags"] == [FLAG]
    r, _ = step(r, enough, stable, CFG, 300.0)
    assert r.phase is Phase.SUCCEEDED
    assert r.history[-1].reason.endswith(f"\nflag: {FLAG}")


def test_a_flag_never_stops_a_rollback() -> None:
    stable = window(18000, 90, (180, 270, 900, 3600, 4050), 1.0)
    failing = window(2000, 600, (2, 3, 10, 40, 45), 1.0)
    r, actions = step(running(), failing, stable, CFG, 50.0)
    assert r.phase is Phase.ROLLED_BACK
    assert [d.decision for d in r.history] == ["start", "flag", "rollback"]
    assert kinds(actions) == ["Notify", "Alert", "Rollback", "Notify"]


OUTAGE = (
    "canary error rate 30.00% (600 of 2000) is past 5.00%, but stable fails as often "
    "(30.00%): upstream trouble, not the canary"
)


def test_an_outage_in_both_variants_holds_and_never_rolls_back() -> None:
    canary = window(2000, 600, (20, 30, 100, 400, 450), 1.0)
    stable = window(18000, 5400, (180, 270, 900, 3600, 4050), 1.0)
    r, actions = step(running(), canary, stable, CFG, 150.0)
    assert (r.phase, r.stage_index, counted_only(actions)) == (Phase.PROGRESSING, 0, ["hold"])
    d = r.last_decision
    assert d is not None
    assert (d.decision, d.actor, d.reason) == ("hold", "controller", OUTAGE)
    assert [x.decision for x in r.history] == ["start"]  # holds are not recorded
    worse = window(2000, 900, (20, 30, 100, 400, 450), 1.0)  # 45% against stable's 30%
    assert step(running(), worse, stable, CFG, 150.0)[0].phase is Phase.ROLLED_BACK
