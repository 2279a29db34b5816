"""The TRAIN phase: a prepared dataset in, one fine-tuning job out, however often it is re-run.

:func:`start_run` finds the run's job (local registry first, then the
backend's job list by the ``tara_run`` metadata) and creates one only when
there is none; whether to reuse, create or refuse is :func:`decide`, a pure
function. A dataset is identified by the SHA-256 of its train and
validation files (checked against ``manifest.json``), a run by that hash
plus the base model and hyperparameters, so the same data tuned on another
base model is a different run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from tara.finetune.backend import (
    BackendError,
    Hyperparameters,
    Job,
    JobEvent,
    JobRequest,
    TrainingBackend,
)
from tara.finetune.config import FinetuneSettings
from tara.finetune.runs import RunRecord, RunRegistry

UPLOADED = ("train.jsonl", "validation.jsonl")
META_DATASET, META_RUN, META_ATTEMPT = "tara_dataset", "tara_run", "tara_attempt"

Decision = Literal["reuse", "create", "blocked"]


@dataclass(frozen=True, slots=True)
class Dataset:
    """A prepared dataset directory, its files checked against the manifest."""

    directory: Path
    hash: str
    train: Path
    validation: Path | None
    """None when the dataset's validation split is empty (nothing to upload)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def training_hash(files: Mapping[str, Any]) -> str:
    """The dataset's identity for training: SHA-256 over the trained files' manifest hashes.

    Runs (``runs.json``, job metadata) and evaluated candidates
    (``candidates.json``) both carry it, so a candidate joins its run.
    """
    key = "".join(f"{name}:{files[name]['sha256']}\n" for name in UPLOADED)
    return hashlib.sha256(key.encode()).hexdigest()


def load_dataset(directory: Path) -> Dataset:
    """Read ``manifest.json`` and check the files; ValueError saying what is wrong."""
    try:
        manifest = orjson.loads((directory / "manifest.json").read_bytes())
        recorded = {name: manifest["files"][name] for name in UPLOADED}
    except FileNotFoundError:
        msg = f"{directory} holds no manifest.json: run `tara finetune prepare` first"
        raise ValueError(msg) from None
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        msg = f"{directory}/manifest.json is not a dataset manifest ({exc})"
        raise ValueError(msg) from exc
    for name, entry in recorded.items():
        path = directory / name
        if not path.is_file() or _sha256(path) != entry.get("sha256"):
            msg = f"{path} is missing or changed since it was prepared (SHA-256 differs)"
            raise ValueError(msg)
    if recorded["train.jsonl"].get("examples", 0) == 0:
        msg = f"{directory}/train.jsonl holds no examples"
        raise ValueError(msg)
    has_validation = recorded["validation.jsonl"].get("examples", 0) > 0
    return Dataset(
        directory=directory,
        hash=training_hash(recorded),
        train=directory / "train.jsonl",
        validation=directory / "validation.jsonl" if has_validation else None,
    )


def hyperparameters(settings: FinetuneSettings) -> Hyperparameters:
    """The job's hyperparameters from the settings."""
    return Hyperparameters(
        n_epochs=settings.n_epochs,
        batch_size=settings.batch_size,
        learning_rate_multiplier=settings.learning_rate_multiplier,
    )


async def create_job(
    backend: TrainingBackend,
    settings: FinetuneSettings,
    files: tuple[str, str | None],
    metadata: Mapping[str, str],
) -> Job:
    """Create the job ``settings`` ask for (base model, hyperparameters, suffix) on the
    uploaded ``(training, validation)`` files; :func:`run_key` names the same settings."""
    training_file, validation_file = files
    request = JobRequest(
        model=settings.base_model,
        training_file=training_file,
        validation_file=validation_file,
        hyperparameters=hyperparameters(settings),
        suffix=settings.suffix,
        metadata=metadata,
    )
    return await backend.create_job(request)


def run_key(dataset_hash: str, settings: FinetuneSettings) -> str:
    """What makes two ``start`` commands the same run: data, base model, training settings."""
    parts = [
        dataset_hash,
        settings.base_model,
        settings.n_epochs,
        settings.batch_size,
        settings.learning_rate_multiplier,
        settings.suffix,
    ]
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:32]


def decide(job: Job | None, force: bool) -> Decision:
    """Reuse a live or successful job; create when there is none; a failed or cancelled
    job blocks a new one unless ``force`` (the same data would likely fail again)."""
    if job is None:
        return "create"
    if job.status in ("failed", "cancelled"):
        return "create" if force else "blocked"
    return "reuse"


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """What ``start`` did: ``created``, ``reused`` or ``blocked``, and the job and record."""

    action: Literal["created", "reused", "blocked"]
    record: RunRecord
    job: Job | None


def record_job(record: RunRecord, job: Job, now: float) -> RunRecord:
    """The record updated from the job's latest state."""
    record.job_id, record.status = job.id, job.status
    record.fine_tuned_model = job.fine_tuned_model
    record.training_file = job.training_file or record.training_file
    record.validation_file = job.validation_file or record.validation_file
    record.updated_at = now
    return record


async def _known_job(backend: TrainingBackend, record: RunRecord | None, key: str) -> Job | None:
    if record is not None and record.job_id is not None:
        try:
            return await backend.get_job(record.job_id)
        except BackendError as exc:
            if exc.status != 404:
                raise
    return await backend.find_job({META_RUN: key})


async def start_run(
    backend: TrainingBackend,
    dataset: Dataset,
    settings: FinetuneSettings,
    registry: RunRegistry,
    *,
    force: bool = False,
    clock: Callable[[], float] = time.time,
) -> StartOutcome:
    """Upload and create the run's job unless it already has one (see :func:`decide`).

    Call with the registry locked (:meth:`RunRegistry.locked`).
    """
    key = run_key(dataset.hash, settings)
    record = registry.get(key)
    job = await _known_job(backend, record, key)
    now = clock()
    if record is None:
        record = RunRecord(
            run_key=key,
            dataset_hash=dataset.hash,
            dataset_dir=str(dataset.directory),
            backend=backend.name,
            base_model=settings.base_model,
            created_at=now,
            updated_at=now,
        )
    if job is not None:
        record.attempt = max(record.attempt, int(job.metadata.get(META_ATTEMPT, "1")))
        registry.put(record_job(record, job, now))
    decision = decide(job, force)
    if decision != "create":
        return StartOutcome("reused" if decision == "reuse" else "blocked", record, job)
    if job is not None:
        record.attempt += 1
        record.job_id = record.status = record.fine_tuned_model = None
    backend.check_base_model(settings.base_model)  # before a byte is uploaded
    if record.training_file is None:
        record.training_file = await backend.upload_file(dataset.train)
        if dataset.validation is not None:
            record.validation_file = await backend.upload_file(dataset.validation)
        # Recorded before the job exists, so a crash here costs no second upload.
        registry.put(record)
    files = (record.training_file, record.validation_file)
    metadata = {META_DATASET: dataset.hash, META_RUN: key, META_ATTEMPT: str(record.attempt)}
    job = await create_job(backend, settings, files, metadata)
    registry.put(record_job(record, job, clock()))
    return StartOutcome("created", record, job)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where training is, from the latest metric event."""

    step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    trained_tokens: int | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "step": self.step,
            "total_steps": self.total_steps,
            "train_loss": self.train_loss,
            "valid_loss": self.valid_loss,
            "trained_tokens": self.trained_tokens,
        }


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) else None


def progress(job: Job, events: Iterable[JobEvent]) -> Progress:
    """Step, losses and tokens from the newest metric event; the job's totals once done."""
    latest: dict[str, Any] = {}
    for event in events:
        if event.data and "step" in event.data:
            latest = event.data
    step, total = _number(latest, "step"), _number(latest, "total_steps")
    tokens = _number(latest, "trained_tokens")
    if job.trained_tokens is not None:
        tokens = job.trained_tokens
    if job.status == "succeeded" and total is not None:
        step = total
    return Progress(
        step=int(step) if step is not None else None,
        total_steps=int(total) if total is not None else None,
        train_loss=_number(latest, "train_loss"),
        valid_loss=_number(latest, "valid_loss"),
        trained_tokens=int(tokens) if tokens is not None else None,
    )
