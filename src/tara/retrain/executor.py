"""Performing a run's steps: the I/O behind each effect of :mod:`tara.retrain.steps`.

Each method does one step and returns what it found as an observation;
:meth:`StepRunner.perform` wraps them all the same way: an error that may
pass (a connection, a 5xx, a store blip) is retried with jittered
exponential backoff (tenacity, ``retrain.step_attempts`` tries), and an
error that cannot (a dataset with nothing to train on, a 4xx from the
backend, a track that does not exist) or the last of the retries becomes
:class:`~tara.retrain.steps.StepFailed`, never an exception.

Every step is idempotent, so a controller that dies anywhere can do it
again: prepare rewrites the run's own directory from the same slice of the
log; creating a job first looks the job up by the run's id in its metadata
(the backend is the record of which jobs exist, so a job created just
before a crash is found, not duplicated); starting the canary first looks
for a rollout of the run's model on its segment. The dataset build and the
evaluation run in threads of their own (:func:`tara.loops.run_in_thread`),
so the controller's loop keeps judging rollouts meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from tara.finetune.backend import BackendError, Job, TrainingBackend
from tara.finetune.eval_cli import run_evaluation
from tara.finetune.eval_report import report_json, write_report
from tara.finetune.extract import ExtractFilter
from tara.finetune.prepare import prepare
from tara.finetune.train import (
    META_DATASET,
    META_RUN,
    Dataset,
    create_job,
    load_dataset,
)
from tara.loops import run_in_thread
from tara.retrain.steps import (
    AbortRollout,
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
)
from tara.rollout.model import Rollout, TransitionError
from tara.rollout.service import RolloutConflict, RolloutNotFound, RolloutService, UnknownTrack
from tara.settings import Settings
from tara.telemetry.log import InteractionFilter
from tara.telemetry.log_backends import open_log

log = logging.getLogger(__name__)

META_SEGMENT = "tara_segment"
"""Job metadata: the segment a loop's job trains for (the run id is under ``tara_run``)."""

Work = Prepare | Upload | CreateJob | PollJob | Evaluate | StartCanary | WatchRollout

STEP_OF_WORK: dict[type[Any], Step] = {
    Prepare: Step.PREPARE,
    Upload: Step.UPLOAD,
    CreateJob: Step.CREATE_JOB,
    PollJob: Step.POLL_JOB,
    Evaluate: Step.EVALUATE,
    StartCanary: Step.START_CANARY,
    WatchRollout: Step.WATCH_ROLLOUT,
}


def permanent(exc: BaseException) -> bool:
    """Whether doing the same step again cannot help (the run fails at once)."""
    if isinstance(exc, BackendError):
        return not exc.transient
    return isinstance(exc, ValueError | UnknownTrack | RolloutNotFound | TransitionError)


def describe(exc: BaseException) -> str:
    """One line for a step's error."""
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ValueError | BackendError) else f"{type(exc).__name__}: {text}"


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    log.warning("fine-tuning loop: step failed (try %d), retrying: %s", state.attempt_number, exc)


def job_seen(job: Job) -> JobSeen:
    """The observation of a job."""
    error = job.error.message if job.error is not None else None
    return JobSeen(job.id, job.status, job.model, job.fine_tuned_model, error, job.trained_tokens)


def rollout_seen(rollout: Rollout) -> RolloutSeen:
    """The observation of a rollout: its phase, and the decisions behind it."""
    last = rollout.last_decision
    evidence: dict[str, Any] = {
        "stage": rollout.stage_index + 1,
        "weight": rollout.weight_bp / 10_000,
        "decisions": [
            {"at": d.at, "decision": d.decision.value, "reason": d.reason, "actor": d.actor}
            for d in rollout.history
        ],
    }
    return RolloutSeen(rollout.id, rollout.phase.value, last.reason if last else "", evidence)


class StepRunner:
    """Performs effects against the interaction log, the training backend and the rollouts."""

    def __init__(
        self,
        settings: Settings,
        service: RolloutService,
        backend: Callable[[], TrainingBackend],
        threads: ThreadPoolExecutor | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._open_backend = backend
        self._backend: TrainingBackend | None = None
        self._threads = threads

    @property
    def backend(self) -> TrainingBackend:
        """The training backend, opened on first use."""
        if self._backend is None:
            self._backend = self._open_backend()
        return self._backend

    async def perform(self, work: Work) -> Observation:
        """Do one step with retries; its observation, or :class:`StepFailed` (module docstring)."""
        r = self._settings.retrain
        retrying = AsyncRetrying(
            stop=stop_after_attempt(r.step_attempts),
            wait=wait_exponential_jitter(
                multiplier=r.step_backoff, max=r.step_max_backoff, jitter=r.step_backoff
            ),
            retry=retry_if_exception(lambda exc: not permanent(exc)),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._step(work)
        except Exception as exc:  # a step's failure is data for the state machine
            return StepFailed(STEP_OF_WORK[type(work)], describe(exc))
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _step(self, work: Work) -> Observation:
        steps: dict[type[Any], Callable[[Any], Awaitable[Observation]]] = {
            Prepare: self.prepare,
            Upload: self.upload,
            CreateJob: self.create_job,
            PollJob: self.poll_job,
            Evaluate: self.evaluate,
            StartCanary: self.start_canary,
            WatchRollout: self.watch_rollout,
        }
        return await steps[type(work)](work)

    def run_dir(self, run_id: str) -> Path:
        """Where a run's dataset and evaluation reports are written."""
        return self._settings.retrain.data_dir / run_id

    async def prepare(self, step: Prepare) -> Prepared:
        """The segment's slice of the log through extract → validate → split, in a thread."""
        out = self.run_dir(step.run_id)
        return await run_in_thread(lambda: build_dataset(self._settings, step, out), self._threads)

    async def dataset(self, where: str, expected: str, rebuild: Prepare) -> Dataset:
        """The run's dataset: where it was written, or built again from the same slice.

        A controller that takes over a run may not have the files its
        predecessor wrote (a pod's own volume); the log slice is fixed, so the
        build is the same unless the log changed meanwhile (then the run fails:
        it would train or be judged on other data than it says).
        """
        try:
            dataset = load_dataset(Path(where))
        except ValueError:
            dataset = None
        if dataset is not None and dataset.hash == expected:
            return dataset
        log.warning("fine-tuning loop: no dataset of %s in %s; building it", rebuild.run_id, where)
        prepared = await self.prepare(rebuild)
        if prepared.dataset_hash != expected:
            msg = (
                f"the dataset of run {rebuild.run_id} was built again and differs (sha256 "
                f"{prepared.dataset_hash[:12]}…, the run's is {expected[:12]}…): the log changed"
            )
            raise ValueError(msg)
        return load_dataset(Path(prepared.dataset_dir))

    async def upload(self, step: Upload) -> Uploaded:
        """Upload the training file (and the validation file, when it holds examples)."""
        dataset = await self.dataset(step.dataset_dir, step.dataset_hash, step.rebuild)
        self.backend.check_base_model(self._settings.finetune.base_model)  # before any upload
        training = await self.backend.upload_file(dataset.train)
        validation = None
        if dataset.validation is not None:
            validation = await self.backend.upload_file(dataset.validation)
        return Uploaded(training, validation)

    async def create_job(self, step: CreateJob) -> JobSeen:
        """The run's job: found by its metadata if one exists, else created (never a second)."""
        backend = self.backend
        job = await backend.find_job({META_RUN: step.run_id})
        if job is None:
            files = (step.training_file, step.validation_file)
            metadata = {
                META_RUN: step.run_id,
                META_DATASET: step.dataset_hash,
                META_SEGMENT: step.segment.label,
            }
            job = await create_job(backend, self._settings.finetune, files, metadata)
        else:
            log.info("fine-tuning loop: run %s already has job %s", step.run_id, job.id)
        return job_seen(job)

    async def poll_job(self, step: PollJob) -> JobSeen:
        """The job as the backend reports it now."""
        return job_seen(await self.backend.get_job(step.job_id))

    async def evaluate(self, step: Evaluate) -> Evaluated:
        """The gate against the segment's stable model on the test split, in a thread."""
        stable = await self._service.stable_model(step.track, step.segment)
        dataset = await self.dataset(step.dataset_dir, step.dataset_hash, step.rebuild)
        directory = dataset.directory

        async def gate() -> dict[str, Any]:
            result = await run_evaluation(
                directory, step.candidate, stable, self._settings, None, register=False
            )
            report = report_json(result)
            json_path, _ = write_report(report, directory)
            return {**report, "report_path": str(json_path)}

        report = await run_in_thread(gate, self._threads)
        kept = {k: report[k] for k in ("checks", "candidate", "stable", "method", "errors")}
        kept["report_path"] = report["report_path"]
        passed = report["outcome"] == "pass"
        return Evaluated(stable, passed, str(report["outcome"]), str(report["reason"]), kept)

    async def start_canary(self, step: StartCanary) -> CanaryStarted | Waiting:
        """The run's canary: an existing rollout of its model on its segment, else a new one."""
        for rollout in await self._service.list(step.track):
            if rollout.candidate_model == step.candidate and rollout.segment == step.segment:
                return CanaryStarted(rollout.id)
        try:
            rollout = await self._service.start(
                step.track,
                step.candidate,
                subject=step.segment.subject,
                language=step.segment.language,
                actor=f"run {step.run_id}",
            )
        except RolloutConflict as exc:  # another rollout holds the segment: wait for it
            return Waiting(Step.START_CANARY, f"canary waits: {exc}")
        return CanaryStarted(rollout.id)

    async def watch_rollout(self, step: WatchRollout) -> RolloutSeen:
        """The rollout's phase and decisions."""
        return rollout_seen(await self._service.get(step.rollout_id))

    async def stop(self, effect: CancelJob | AbortRollout) -> None:
        """Stop a cancelled run's job or canary; a failure is logged (the run is cancelled)."""
        try:
            if isinstance(effect, CancelJob):
                await self.backend.cancel_job(effect.job_id)
            else:
                await self._service.abort(
                    effect.rollout_id, actor=f"run {effect.run_id}", reason=effect.reason
                )
        except Exception as exc:  # best effort: the operator sees the run cancelled either way
            log.warning("fine-tuning loop: cannot carry out %s: %s", effect, exc)

    async def aclose(self) -> None:
        """Close the training backend if it was opened."""
        if self._backend is not None:
            await self._backend.aclose()
            self._backend = None


async def build_dataset(settings: Settings, step: Prepare, out: Path) -> Prepared:
    """Build the run's dataset from its segment's slice of the log (the ``prepare`` pipeline)."""
    ft = settings.finetune
    segment = step.segment
    log_ = open_log(settings.database_url, settings.telemetry)
    try:
        await log_.migrate()
        query = InteractionFilter(
            since=step.since,
            until=step.until,
            track=step.track,
            language=segment.language,
            subject=segment.subject,
            min_rating=ft.min_rating,
            rated_only=True,
        )
        where = ExtractFilter(ft.min_rating, step.since, step.until, step.track)
        result = await prepare(log_.iter_interactions(query), ft, out, where)
    finally:
        await log_.aclose()
    dataset = load_dataset(out)  # ValueError (the run fails) when nothing is left to train on
    examples = {name: f.examples for name, f in result.files.items()}
    totals = result.manifest["totals"]
    evidence = {"totals": totals, "rules": result.manifest["rules"], "dir": str(out)}
    return Prepared(str(out), dataset.hash, examples, evidence)
