"""The pure step function and the manual transitions, as tables and short stories."""

from __future__ import annotations

import json

import pytest

from tara.rollout.actions import Alert, Notify, PromoteToStable, Rollback, SetWeight
from tara.rollout.config import RolloutSettings
from tara.rollout.decide import step
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
