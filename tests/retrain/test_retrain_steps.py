"""``advance_run`` as tables: each state's step, each observation's effect, cancel and approve."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tara.retrain.config import RetrainSettings
from tara.retrain.run import OPEN, TERMINAL, Run, RunState
from tara.retrain.steps import (
    STEP_OF,
    AbortRollout,
    Announce,
    CanaryStarted,
    CancelJob,
    CreateJob,
    Evaluate,
    Evaluated,
    JobSeen,
    Observation,
    PollJob,
    Prepare,
    Prepared,
    RolloutSeen,
    StartCanary,
    Step,
    StepFailed,
    Upload,
    Uploaded,
    Waiting,
    WatchRollout,
    advance_run,
    approve,
    request_cancel,
)
from tara.rollout.routing import Segment

SETTINGS = RetrainSettings(poll_interval=timedelta(seconds=60))
HI_MATH = Segment("math", "hi")
NOW = 10_000.0
RECIPE = Prepare("ft-1", "tara-tutor", HI_MATH, 500.0, 1000.0)
"""How the run's dataset is built (again, where a step needs it and it is missing)."""


FILLED_BY = {
    RunState.PREPARED: {"dataset_dir": "/runs/ft-1", "dataset_hash": "h1"},
    RunState.UPLOADED: {"training_file": "file-t", "validation_file": "file-v"},
    RunState.TRAINING: {"job_id": "ftjob-1", "checked_at": NOW - 120},
    RunState.TRAINED: {"fine_tuned_model": "ft:base:tara:1"},
    RunState.EVALUATED: {"approved_by": "auto_deploy"},
    RunState.CANARY: {"rollout_id": "ro-1", "rollout_phase": "progressing"},
}
"""What each state adds to a run on its way (a run in a state holds all of its predecessors')."""


def run(state: RunState = RunState.PENDING, **changes: Any) -> Run:
    """A run in ``state`` with everything the states before it filled in."""
    base = Run("ft-1", "tara-tutor", HI_MATH, 1000.0, 500.0, 1000.0, state_since=1000.0)
    filled: dict[str, Any] = {}
    for reached, fields in FILLED_BY.items():
        if state in OPEN and list(RunState).index(reached) > list(RunState).index(state):
            break
        filled |= fields
    return replace(base, state=state, **(filled | changes))


# -- idle: each open state takes its step --------------------------------------------

NEXT_STEP = [
    (RunState.PENDING, RECIPE),
    (RunState.PREPARED, Upload("ft-1", "/runs/ft-1", "h1", RECIPE)),
    (RunState.UPLOADED, CreateJob("ft-1", "h1", "file-t", "file-v", HI_MATH)),
    (RunState.TRAINING, PollJob("ft-1", "ftjob-1")),
    (
        RunState.TRAINED,
        Evaluate("ft-1", "tara-tutor", HI_MATH, "/runs/ft-1", "ft:base:tara:1", "h1", RECIPE),
    ),
    (RunState.EVALUATED, StartCanary("ft-1", "tara-tutor", HI_MATH, "ft:base:tara:1")),
    (RunState.CANARY, WatchRollout("ft-1", "ro-1")),
]


@pytest.mark.parametrize(("state", "effect"), NEXT_STEP, ids=[s for s, _ in NEXT_STEP])
def test_an_idle_run_takes_the_step_of_its_state_and_changes_nothing(
    state: RunState, effect: object
) -> None:
    before = run(state)
    after, effects = advance_run(before, None, SETTINGS, NOW)
    assert after is before
    assert effects == [effect]


def test_every_open_state_has_a_step_and_no_terminal_one_does() -> None:
    assert set(STEP_OF) == OPEN
    for state in TERMINAL:
        before = run(state)
        assert advance_run(before, None, SETTINGS, NOW) == (before, [])
        assert advance_run(before, StepFailed(Step.PREPARE, "x"), SETTINGS, NOW) == (before, [])


def test_a_job_is_polled_only_every_poll_interval() -> None:
    fresh = run(RunState.TRAINING, checked_at=NOW - 30)
    assert advance_run(fresh, None, SETTINGS, NOW) == (fresh, [])
    assert advance_run(fresh, None, SETTINGS, NOW + 30)[1] == [PollJob("ft-1", "ftjob-1")]


def test_an_evaluated_run_without_approval_waits() -> None:
    waiting = run(RunState.EVALUATED, approved_by=None)
    assert advance_run(waiting, None, SETTINGS, NOW) == (waiting, [])
    approved = approve(waiting, "sre", NOW)
    assert approved.approved_by == "sre"
    assert advance_run(approved, None, SETTINGS, NOW)[1] == [
        StartCanary("ft-1", "tara-tutor", HI_MATH, "ft:base:tara:1")
    ]


# -- observations move the run on ----------------------------------------------------

PASS_REPORT = {"checks": [{"name": "accuracy", "passed": True}]}

MOVES: list[tuple[RunState, Observation, RunState, object | None]] = [
    (
        RunState.PENDING,
        Prepared("/runs/ft-1", "h1", {"train": 80, "validation": 10, "test": 10}),
        RunState.PREPARED,
        Upload("ft-1", "/runs/ft-1", "h1", RECIPE),
    ),
    (
        RunState.PREPARED,
        Uploaded("file-t", "file-v"),
        RunState.UPLOADED,
        CreateJob("ft-1", "h1", "file-t", "file-v", HI_MATH),
    ),
    (RunState.UPLOADED, JobSeen("ftjob-1", "queued", "base"), RunState.TRAINING, None),
    (RunState.TRAINING, JobSeen("ftjob-1", "running", "base"), RunState.TRAINING, None),
    (
        RunState.TRAINING,
        JobSeen("ftjob-1", "succeeded", "base", "ft:base:tara:1", trained_tokens=900),
        RunState.TRAINED,
        Evaluate("ft-1", "tara-tutor", HI_MATH, "/runs/ft-1", "ft:base:tara:1", "h1", RECIPE),
    ),
    (RunState.TRAINING, JobSeen("ftjob-1", "succeeded", "base"), RunState.FAILED, None),
    (RunState.TRAINING, JobSeen("ftjob-1", "failed", "base", error="bad"), RunState.FAILED, None),
    (RunState.TRAINING, JobSeen("ftjob-1", "cancelled", "base"), RunState.CANCELLED, None),
    (
        RunState.TRAINED,
        Evaluated("tara-stable", True, "pass", "every check passed", PASS_REPORT),
        RunState.EVALUATED,
        StartCanary("ft-1", "tara-tutor", HI_MATH, "ft:base:tara:1"),
    ),
    (
        RunState.TRAINED,
        Evaluated("tara-stable", False, "fail", "failed: accuracy"),
        RunState.REJECTED,
        None,
    ),
    (
        RunState.TRAINED,
        Evaluated("tara-stable", False, "inconclusive", "only 3 answered"),
        RunState.REJECTED,
        None,
    ),
    (RunState.EVALUATED, CanaryStarted("ro-9"), RunState.CANARY, WatchRollout("ft-1", "ro-9")),
    (RunState.CANARY, RolloutSeen("ro-1", "succeeded"), RunState.PROMOTED, None),
    (RunState.CANARY, RolloutSeen("ro-1", "rolled_back", "drop"), RunState.ROLLED_BACK, None),
    (RunState.CANARY, RolloutSeen("ro-1", "aborted"), RunState.CANCELLED, None),
    (RunState.PENDING, StepFailed(Step.PREPARE, "too few"), RunState.FAILED, None),
    (RunState.UPLOADED, StepFailed(Step.CREATE_JOB, "HTTP 400"), RunState.FAILED, None),
]


@pytest.mark.parametrize(
    ("state", "observation", "then", "work"),
    MOVES,
    ids=[f"{s}-{type(o).__name__}-{t}" for s, o, t, _ in MOVES],
)
def test_an_observation_moves_the_run_and_announces_the_change(
    state: RunState, observation: Observation, then: RunState, work: object | None
) -> None:
    before = run(state)
    after, effects = advance_run(before, observation, SETTINGS, NOW)
    assert after.state is then
    if then is state:
        assert not any(isinstance(e, Announce) for e in effects)
        assert after.steps == before.steps
        return
    assert effects[0] == Announce(after, state)
    assert effects[1:] == ([work] if work is not None else [])
    assert after.steps[-1].state is then
    assert after.steps[-1].at == NOW
    assert after.state_since == NOW
    assert after.reason == after.steps[-1].reason
    assert (after.ended_at == NOW) is (then in TERMINAL)


def test_what_a_run_keeps_from_its_steps() -> None:
    trained, _ = advance_run(
        run(RunState.TRAINING),
        JobSeen("ftjob-1", "succeeded", "gpt-x", "ft:gpt-x:tara:1", trained_tokens=900),
        SETTINGS,
        NOW,
    )
    assert (trained.fine_tuned_model, trained.base_model) == ("ft:gpt-x:tara:1", "gpt-x")
    assert trained.steps[-1].evidence["trained_tokens"] == 900
    rejected, _ = advance_run(
        replace(trained, state=RunState.TRAINED),
        Evaluated("tara-stable", False, "fail", "failed: accuracy", {"checks": [1]}),
        SETTINGS,
        NOW,
    )
    assert rejected.stable_model == "tara-stable"
    assert rejected.gate == {"outcome": "fail", "reason": "failed: accuracy", "checks": [1]}
    assert "failed: accuracy" in rejected.reason
    rolled, _ = advance_run(
        run(RunState.CANARY), RolloutSeen("ro-1", "rolled_back", "rating drop 0.6"), SETTINGS, NOW
    )
    assert rolled.reason == "rollout ro-1 rolled_back: rating drop 0.6"
    assert rolled.rollout_phase == "rolled_back"


def test_without_auto_deploy_a_passing_model_waits_for_approval() -> None:
    manual = RetrainSettings(auto_deploy=False)
    after, effects = advance_run(
        run(RunState.TRAINED), Evaluated("tara-stable", True, "pass", "ok"), manual, NOW
    )
    assert after.state is RunState.EVALUATED
    assert after.approved_by is None
    assert effects == [Announce(after, RunState.TRAINED)]
    assert "tara finetune approve ft-1" in after.reason


def test_a_progressing_rollout_changes_the_run_only_when_its_phase_does() -> None:
    canary = run(RunState.CANARY)
    same, effects = advance_run(canary, RolloutSeen("ro-1", "progressing"), SETTINGS, NOW)
    assert same is canary
    assert effects == [WatchRollout("ft-1", "ro-1")]
    paused, _ = advance_run(canary, RolloutSeen("ro-1", "paused"), SETTINGS, NOW)
    assert paused.rollout_phase == "paused"
    assert paused.state is RunState.CANARY


def test_waiting_keeps_the_state_and_says_why_once() -> None:
    evaluated = run(RunState.EVALUATED)
    why = "track tara-tutor already has rollout ro-7 on all"
    after, effects = advance_run(evaluated, Waiting(Step.START_CANARY, why), SETTINGS, NOW)
    assert after.state is RunState.EVALUATED
    assert after.reason == why
    assert effects == [StartCanary("ft-1", "tara-tutor", HI_MATH, "ft:base:tara:1")]
    again, _ = advance_run(after, Waiting(Step.START_CANARY, why), SETTINGS, NOW + 5)
    assert again is after


def test_a_late_answer_for_a_step_the_run_has_left_is_ignored() -> None:
    training = run(RunState.TRAINING)
    assert advance_run(training, StepFailed(Step.PREPARE, "late"), SETTINGS, NOW) == (training, [])
    late, _ = advance_run(training, Prepared("/x", "h", {"train": 1}), SETTINGS, NOW)
    assert late is training


# -- cancel ---------------------------------------------------------------------------

CANCELS = [
    (RunState.PENDING, []),
    (RunState.TRAINING, [CancelJob("ft-1", "ftjob-1")]),
    (RunState.EVALUATED, []),
    (RunState.CANARY, [AbortRollout("ft-1", "ro-1", "cancelled by sre: bad data")]),
]


@pytest.mark.parametrize(("state", "stops"), CANCELS, ids=[s for s, _ in CANCELS])
def test_a_cancel_request_ends_the_run_and_stops_what_it_runs(
    state: RunState, stops: list[object]
) -> None:
    requested = request_cancel(run(state), "sre", "bad data", NOW)
    after, effects = advance_run(requested, None, SETTINGS, NOW + 1)
    assert after.state is RunState.CANCELLED
    assert after.reason == "cancelled by sre: bad data"
    assert after.steps[-1].actor == "sre"
    assert effects == [Announce(after, state), *stops]


def test_cancel_and_approve_refuse_what_their_state_does_not_allow() -> None:
    with pytest.raises(ValueError, match="already ended"):
        request_cancel(run(RunState.PROMOTED), "sre", "", NOW)
    with pytest.raises(ValueError, match="it is training, not evaluated"):
        approve(run(RunState.TRAINING), "sre", NOW)
    approved = run(RunState.EVALUATED, approved_by="auto_deploy")
    assert approve(approved, "sre", NOW) is approved
    asked = request_cancel(run(), "sre", "", NOW)
    assert request_cancel(asked, "other", "", NOW) is asked
