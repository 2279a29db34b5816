"""The run's state machine as one pure function: ``advance_run(run, observation, settings, now)``.

Given a run and what was just observed (the result of its last step, or
``None`` when nothing new came in), :func:`advance_run` returns the run as
it should now be and the effects to carry out: the next step to perform
(:class:`Prepare`, :class:`Upload`, :class:`CreateJob`, :class:`PollJob`,
:class:`Evaluate`, :class:`StartCanary`, :class:`WatchRollout`), what a
cancellation must stop (:class:`CancelJob`, :class:`AbortRollout`) and an
:class:`Announce` for every change of state (a webhook and a metric). No I/O
happens here; :mod:`tara.retrain.executor` performs the effects and feeds
their results back as observations on the next tick.

Because the run is persisted before its effects run and every step is
idempotent, a controller that dies at any point is replaced by one that
calls :func:`advance_run` on the stored run and does the same step again.
An observation for a step the run is no longer at (a late result after a
cancel, say) is ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tara.retrain.config import RetrainSettings
from tara.retrain.run import Run, RunState
from tara.rollout.routing import Segment


class Step(enum.StrEnum):
    """The work that moves a run out of its state."""

    PREPARE = "prepare"
    UPLOAD = "upload"
    CREATE_JOB = "create_job"
    POLL_JOB = "poll_job"
    EVALUATE = "evaluate"
    START_CANARY = "start_canary"
    WATCH_ROLLOUT = "watch_rollout"


STEP_OF: dict[RunState, Step] = {
    RunState.PENDING: Step.PREPARE,
    RunState.PREPARED: Step.UPLOAD,
    RunState.UPLOADED: Step.CREATE_JOB,
    RunState.TRAINING: Step.POLL_JOB,
    RunState.TRAINED: Step.EVALUATE,
    RunState.EVALUATED: Step.START_CANARY,
    RunState.CANARY: Step.WATCH_ROLLOUT,
}
"""Which step an open run takes next."""


# -- observations: what a step found out -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """The segment's dataset is written and checked."""

    dataset_dir: str
    dataset_hash: str
    examples: Mapping[str, int]
    evidence: Mapping[str, Any] = field(default_factory=dict)
    """Counts from the manifest: read, extracted, kept, dropped per rule."""


@dataclass(frozen=True, slots=True)
class Uploaded:
    """The training (and validation) file is at the backend."""

    training_file: str
    validation_file: str | None


@dataclass(frozen=True, slots=True)
class JobSeen:
    """The run's job as the backend reports it (just created, found again, or polled)."""

    job_id: str
    status: str
    base_model: str
    fine_tuned_model: str | None = None
    error: str | None = None
    trained_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Evaluated:
    """The gate's verdict on the fine-tuned model against the segment's stable model."""

    stable_model: str
    passed: bool
    outcome: str
    reason: str
    report: Mapping[str, Any] = field(default_factory=dict)
    """Every check (candidate, stable, bound) and both models' metrics."""


@dataclass(frozen=True, slots=True)
class CanaryStarted:
    """The canary rollout of the run's model exists (started now, or found again)."""

    rollout_id: str


@dataclass(frozen=True, slots=True)
class RolloutSeen:
    """The run's rollout as it is now."""

    rollout_id: str
    phase: str
    reason: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Waiting:
    """The step cannot go on yet, for a reason that will pass (another rollout holds the
    segment); it is tried again next tick without counting as a failure."""

    step: Step
    reason: str


@dataclass(frozen=True, slots=True)
class StepFailed:
    """The step failed for good (after its retries, or at once for an error that cannot pass)."""

    step: Step
    reason: str


Observation = (
    Prepared | Uploaded | JobSeen | Evaluated | CanaryStarted | RolloutSeen | Waiting | StepFailed
)


# -- effects: what the executor must do ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepare:
    """Build the segment's dataset from the interaction log into ``output_dir``."""

    run_id: str
    track: str
    segment: Segment
    since: float
    until: float


@dataclass(frozen=True, slots=True)
class Upload:
    """Upload the dataset's training and validation files."""

    run_id: str
    dataset_dir: str
    dataset_hash: str
    rebuild: Prepare
    """How to build the dataset again where it is missing (another controller built it)."""


@dataclass(frozen=True, slots=True)
class CreateJob:
    """Find the run's job by its metadata, or create it: never a second one."""

    run_id: str
    dataset_hash: str
    training_file: str
    validation_file: str | None
    segment: Segment


@dataclass(frozen=True, slots=True)
class PollJob:
    """Read the job's status."""

    run_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class Evaluate:
    """Gate the fine-tuned model against the segment's stable model on the test split."""

    run_id: str
    track: str
    segment: Segment
    dataset_dir: str
    candidate: str
    dataset_hash: str
    rebuild: Prepare


@dataclass(frozen=True, slots=True)
class StartCanary:
    """Start (or find) the canary rollout of ``candidate`` scoped to the segment."""

    run_id: str
    track: str
    segment: Segment
    candidate: str


@dataclass(frozen=True, slots=True)
class WatchRollout:
    """Read the rollout's phase."""

    run_id: str
    rollout_id: str


@dataclass(frozen=True, slots=True)
class CancelJob:
    """Ask the backend to stop the run's job (best effort)."""

    run_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class AbortRollout:
    """End the run's canary without a verdict (best effort)."""

    run_id: str
    rollout_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Announce:
    """The run changed state: a webhook and ``tara_finetune_runs_total{status}``."""

    run: Run
    previous: RunState | None
    """``None`` for a run just admitted."""


Effect = (
    Prepare
    | Upload
    | CreateJob
    | PollJob
    | Evaluate
    | StartCanary
    | WatchRollout
    | CancelJob
    | AbortRollout
    | Announce
)
WORK = (Prepare, Upload, CreateJob, PollJob, Evaluate, StartCanary, WatchRollout)
"""Effects that are a run's step (one at a time per run)."""

Advanced = tuple[Run, list[Effect]]


# -- the machine -----------------------------------------------------------------------

JOB_ACTIVE = frozenset({"validating_files", "queued", "running"})


def advance_run(
    run: Run, observation: Observation | None, settings: RetrainSettings, now: float
) -> Advanced:
    """The run after ``observation``, and the effects to carry out (module docstring).

    Returns ``run`` itself (the same object) when nothing changed, so the
    caller saves only real changes.
    """
    if not run.open:
        return run, []
    if run.cancel_requested_by is not None:
        return _cancel(run, now)
    if observation is None:
        return run, _work(run, settings, now)
    if isinstance(observation, Waiting | StepFailed) and observation.step is not STEP_OF[run.state]:
        return run, []  # a late answer for a step the run has left
    after = _observe(run, observation, settings, now)
    effects: list[Effect] = []
    if after.state is not run.state:
        effects.append(Announce(after, run.state))
    if after.open:
        effects.extend(_work(after, settings, now))
    return after, effects


def _work(run: Run, settings: RetrainSettings, now: float) -> list[Effect]:
    """The step the run takes from its state (nothing when it waits)."""
    state = run.state
    recipe = Prepare(run.id, run.track, run.segment, run.data_since, run.data_until)
    if state is RunState.PENDING:
        return [recipe]
    if state is RunState.PREPARED and run.dataset_dir is not None:
        return [Upload(run.id, run.dataset_dir, run.dataset_hash or "", recipe)]
    if state is RunState.UPLOADED and run.training_file is not None:
        return [
            CreateJob(
                run.id,
                run.dataset_hash or "",
                run.training_file,
                run.validation_file,
                run.segment,
            )
        ]
    if state is RunState.TRAINING and run.job_id is not None:
        every = settings.poll_interval.total_seconds()
        due = run.checked_at is None or now - run.checked_at >= every
        return [PollJob(run.id, run.job_id)] if due else []
    if state is RunState.TRAINED and run.fine_tuned_model and run.dataset_dir:
        model, data = run.fine_tuned_model, run.dataset_dir
        return [
            Evaluate(run.id, run.track, run.segment, data, model, run.dataset_hash or "", recipe)
        ]
    if state is RunState.EVALUATED and run.approved_by and run.fine_tuned_model:
        return [StartCanary(run.id, run.track, run.segment, run.fine_tuned_model)]
    if state is RunState.CANARY and run.rollout_id is not None:
        return [WatchRollout(run.id, run.rollout_id)]
    return []


def _cancel(run: Run, now: float) -> Advanced:
    who = run.cancel_requested_by or "operator"
    reason = f"cancelled by {who}" + (f": {run.cancel_reason}" if run.cancel_reason else "")
    effects: list[Effect] = []
    if run.state is RunState.TRAINING and run.job_id is not None:
        effects.append(CancelJob(run.id, run.job_id))
    if run.state is RunState.CANARY and run.rollout_id is not None:
        effects.append(AbortRollout(run.id, run.rollout_id, reason))
    after = run.entered(RunState.CANCELLED, now, reason, {"was": run.state.value}, who)
    return after, [Announce(after, run.state), *effects]


def _observe(run: Run, obs: Observation, settings: RetrainSettings, now: float) -> Run:
    """The run after one observation (the same object when it changes nothing)."""
    state = run.state
    if isinstance(obs, StepFailed):
        return run.entered(RunState.FAILED, now, f"{obs.step} failed: {obs.reason}", {})
    if isinstance(obs, Waiting):
        return run if run.reason == obs.reason else replace(run, reason=obs.reason, updated_at=now)
    if isinstance(obs, Prepared) and state is RunState.PENDING:
        counts = ", ".join(f"{k} {v}" for k, v in obs.examples.items())
        return run.entered(
            RunState.PREPARED,
            now,
            f"dataset of {run.segment.label} written: {counts}",
            {**obs.evidence, "examples": dict(obs.examples)},
            dataset_dir=obs.dataset_dir,
            dataset_hash=obs.dataset_hash,
            examples=dict(obs.examples),
        )
    if isinstance(obs, Uploaded) and state is RunState.PREPARED:
        files = {"training_file": obs.training_file, "validation_file": obs.validation_file}
        return run.entered(
            RunState.UPLOADED,
            now,
            f"uploaded {obs.training_file}",
            files,
            training_file=obs.training_file,
            validation_file=obs.validation_file,
        )
    if isinstance(obs, JobSeen) and state in (RunState.UPLOADED, RunState.TRAINING):
        return _job(run, obs, now)
    if isinstance(obs, Evaluated) and state is RunState.TRAINED:
        return _gate(run, obs, settings, now)
    if isinstance(obs, CanaryStarted) and state is RunState.EVALUATED:
        return run.entered(
            RunState.CANARY,
            now,
            f"canary {obs.rollout_id} of {run.fine_tuned_model} on {run.segment.label}",
            {"rollout_id": obs.rollout_id},
            rollout_id=obs.rollout_id,
            rollout_phase="progressing",
        )
    if isinstance(obs, RolloutSeen) and state is RunState.CANARY:
        return _rollout(run, obs, now)
    return run


_ROLLOUT_ENDINGS = {
    "succeeded": RunState.PROMOTED,
    "rolled_back": RunState.ROLLED_BACK,
    "aborted": RunState.CANCELLED,
}


def _job(run: Run, obs: JobSeen, now: float) -> Run:
    known: dict[str, Any] = {
        "job_id": obs.job_id,
        "job_status": obs.status,
        "checked_at": now,
        "base_model": obs.base_model,
    }
    evidence: dict[str, Any] = {
        "job_id": obs.job_id,
        "status": obs.status,
        "base_model": obs.base_model,
    }
    if obs.status == "succeeded":
        if not obs.fine_tuned_model:
            reason = f"job {obs.job_id} succeeded without naming a model"
            return run.entered(RunState.FAILED, now, reason, evidence, **known)
        evidence |= {"fine_tuned_model": obs.fine_tuned_model, "trained_tokens": obs.trained_tokens}
        return run.entered(
            RunState.TRAINED,
            now,
            f"job {obs.job_id} trained {obs.fine_tuned_model}",
            evidence,
            fine_tuned_model=obs.fine_tuned_model,
            **known,
        )
    if obs.status == "failed":
        reason = f"job {obs.job_id} failed: {obs.error or 'no reason given'}"
        return run.entered(RunState.FAILED, now, reason, evidence, **known)
    if obs.status == "cancelled":
        reason = f"job {obs.job_id} was cancelled at the backend"
        return run.entered(RunState.CANCELLED, now, reason, evidence, **known)
    if run.state is RunState.UPLOADED:
        reason = f"job {obs.job_id} on {obs.base_model}: {obs.status}"
        return run.entered(RunState.TRAINING, now, reason, evidence, **known)
    return replace(run, updated_at=now, reason=f"job {obs.job_id}: {obs.status}", **known)


def _gate(run: Run, obs: Evaluated, settings: RetrainSettings, now: float) -> Run:
    evidence = {
        "stable_model": obs.stable_model,
        "outcome": obs.outcome,
        "reason": obs.reason,
        **obs.report,
    }
    gate = {"outcome": obs.outcome, "reason": obs.reason, **obs.report}
    against = f"{run.fine_tuned_model} against {obs.stable_model}"
    if not obs.passed:
        return run.entered(
            RunState.REJECTED,
            now,
            f"gate {obs.outcome} for {against}: {obs.reason}",
            evidence,
            stable_model=obs.stable_model,
            gate=gate,
        )
    approved = "auto_deploy" if settings.auto_deploy else None
    then = "its canary starts" if approved else f"waiting for `tara finetune approve {run.id}`"
    return run.entered(
        RunState.EVALUATED,
        now,
        f"gate passed for {against}: {obs.reason}; {then}",
        evidence,
        stable_model=obs.stable_model,
        gate=gate,
        approved_by=approved,
    )


def _rollout(run: Run, obs: RolloutSeen, now: float) -> Run:
    ending = _ROLLOUT_ENDINGS.get(obs.phase)
    if ending is None:
        if obs.phase == run.rollout_phase:
            return run
        return replace(run, rollout_phase=obs.phase, updated_at=now)
    reason = f"rollout {obs.rollout_id} {obs.phase}" + (f": {obs.reason}" if obs.reason else "")
    evidence = {"rollout_id": obs.rollout_id, **obs.evidence}
    return run.entered(ending, now, reason, evidence, rollout_phase=obs.phase)


def approve(run: Run, actor: str, now: float) -> Run:
    """Let an evaluated run's model go to its canary; ValueError unless it is waiting for that."""
    if run.state is not RunState.EVALUATED:
        msg = f"cannot approve run {run.id}: it is {run.state.value}, not evaluated"
        raise ValueError(msg)
    if run.approved_by is not None:
        return run
    return replace(
        run, approved_by=actor, updated_at=now, reason=f"approved by {actor}; its canary starts"
    )


def request_cancel(run: Run, actor: str, reason: str, now: float) -> Run:
    """Ask the controller to stop the run; ValueError if it has already ended."""
    if not run.open:
        msg = f"cannot cancel run {run.id}: it has already ended ({run.state.value})"
        raise ValueError(msg)
    if run.cancel_requested_by is not None:
        return run
    return replace(run, cancel_requested_by=actor, cancel_reason=reason, updated_at=now)
