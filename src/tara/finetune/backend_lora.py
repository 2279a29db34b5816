"""The open-weight training backend: a LoRA adapter trained here, served by vLLM.

``finetune.backend = "lora"``. Behind the same
:class:`~tara.finetune.backend.TrainingBackend` Protocol as OpenAI's, so
``tara finetune start | status | cancel`` and the run registry work
unchanged: "uploading" copies a file into ``lora.work_dir`` (by content,
so a retry stores it once), creating a job writes its directory and starts
the training process (:mod:`tara.finetune.lora_worker`) in its own session,
and ``get_job``/``list_events`` read what that process wrote — from any
process, so ``status`` works from another shell or after a restart. The
backend itself never imports the training libraries.

The job's model is ``finetune.base_model`` (a local directory or a model id
in the local Hugging Face cache; the worker runs with the hub offline). Its
fine-tuned model is ``ft:<base name>:<suffix>:<id>``, the name vLLM serves
the adapter under once the job succeeds.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara.finetune.backend import BackendError, Hyperparameters, Job, JobEvent, JobRequest
from tara.finetune.lora_config import LoraSettings
from tara.finetune.lora_jobs import ACTIVE, JobDir, JobState, JobStore
from tara.finetune.lora_worker import KEY_VARIABLE

if TYPE_CHECKING:
    from tara.settings import Settings

STOP_GRACE = 10.0
"""Seconds a cancelled training process gets after SIGTERM before SIGKILL."""
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
"""The worker's environment additions: it never downloads, whatever the cache lacks."""


def adapter_name(base_model: str, suffix: str | None, job_id: str) -> str:
    """``ft:<last part of the base model's path or id>:<suffix>:<8 characters of the job id>``."""
    base = base_model.rstrip("/").rsplit("/", 1)[-1] or "model"
    return ":".join(["ft", base, *([suffix] if suffix else []), job_id.rsplit("-", 1)[-1][:8]])


def _resolved(base_model: str) -> str:
    """A local directory as an absolute path (what the adapter records); an id unchanged."""
    path = Path(base_model).expanduser()
    return str(path.resolve()) if path.is_dir() else base_model


class LoraBackend:
    """:class:`~tara.finetune.backend.TrainingBackend` over local training processes."""

    name = "lora"

    def __init__(
        self,
        lora: LoraSettings,
        *,
        server_url: str,
        server_api_key: str | None,
        python: str = sys.executable,
    ) -> None:
        self._lora = lora
        self._store = JobStore(lora.work_dir)
        self._server_url = server_url
        self._server_api_key = server_api_key
        self._python = python

    # -- files -------------------------------------------------------------------------------

    def _upload(self, path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        file_id = f"file-{digest.hexdigest()[:24]}"
        target = self._store.files / f"{file_id}.jsonl"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_suffix(".tmp")
            shutil.copyfile(path, staged)
            staged.replace(target)
        return file_id

    async def upload_file(self, path: Path) -> str:
        """Copy the file into ``work_dir/files``; its id is its content's hash."""
        try:
            return await asyncio.to_thread(self._upload, path)
        except OSError as exc:
            raise BackendError(f"cannot store {path}: {exc}") from exc

    def _file(self, file_id: str, param: str) -> Path:
        path = self._store.files / f"{file_id}.jsonl"
        if "/" in file_id or not path.is_file():
            raise BackendError(f"invalid {param}: {file_id}", status=400)
        return path

    # -- jobs --------------------------------------------------------------------------------

    def _spec(
        self,
        job_id: str,
        model: str,
        files: tuple[Path, Path | None],
        hp: Hyperparameters,
        name: str,
    ) -> dict[str, Any]:
        adapter_dir = self._store.adapters / name
        served_dir = self._lora.server_adapter_dir
        served = f"{served_dir.rstrip('/')}/{name}" if served_dir else str(adapter_dir.resolve())
        return {
            "job_id": job_id,
            "base_model": _resolved(model),
            "train_file": str(files[0].resolve()),
            "validation_file": str(files[1].resolve()) if files[1] else None,
            "hyperparameters": {
                "n_epochs": hp.n_epochs,
                "batch_size": hp.batch_size,
                "learning_rate_multiplier": hp.learning_rate_multiplier,
            },
            "lora": self._lora.model_dump(mode="json", exclude={"server_api_key"}),
            "adapter_dir": str(adapter_dir.resolve()),
            "serving": {
                "adapter_name": name,
                "server_url": self._server_url,
                "server_adapter_path": served,
            },
        }

    def _spawn(self, job: JobDir) -> None:
        """Start the training process, holding the job's worker lock (it records its pid)."""
        env = {**os.environ, **OFFLINE}
        env.pop(KEY_VARIABLE, None)
        if self._server_api_key:
            env[KEY_VARIABLE] = self._server_api_key
        # The lock is taken here and handed over: between this call and the child's
        # start nobody can mistake the job for one whose process died.
        lock_fd = os.open(job.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with job.log_path.open("ab") as out:
                child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [
                        self._python,
                        "-m",
                        "tara.finetune.lora_worker",
                        str(job.path),
                        "--lock-fd",
                        str(lock_fd),
                        "--detach",
                    ],
                    pass_fds=(lock_fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            # The first process only forks the worker off and exits.
            child.wait(timeout=60)
        finally:
            os.close(lock_fd)

    def _create(self, request: JobRequest) -> Job:
        model, training_file, validation_file = (
            request.model,
            request.training_file,
            request.validation_file,
        )
        hp, suffix, metadata = request.hyperparameters, request.suffix, request.metadata
        train = self._file(training_file, "training_file")
        valid = self._file(validation_file, "validation_file") if validation_file else None
        job_id = self._store.new_id()
        name = adapter_name(model, suffix, job_id)
        state = JobState(
            id=job_id,
            status="queued",
            model=model,
            created_at=int(time.time()),
            training_file=training_file,
            validation_file=validation_file,
            metadata=dict(metadata),
        )
        job = self._store.create(state, self._spec(job_id, model, (train, valid), hp, name))
        job.event(f"Job created: LoRA adapter on {model}, to be served as {name}")
        self._spawn(job)
        return job.read().as_job()

    def check_base_model(self, model: str) -> None:
        """A local directory or a Hugging Face id (``org/name``, from the local cache): the
        worker trains weights on this machine, so a hosted model's name cannot work."""
        if Path(model).expanduser().is_dir() or ("/" in model and not model.startswith("ft:")):
            return
        msg = (
            f"finetune.base_model {model!r} is not a directory of weights: the LoRA backend "
            "accepts a local model directory or a Hugging Face model id (org/name) in the "
            "local cache"
        )
        raise BackendError(msg, status=400)

    async def create_job(self, request: JobRequest) -> Job:
        """Write the job and start its training process (in its own session)."""
        try:
            return await asyncio.to_thread(self._create, request)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackendError(f"cannot start a LoRA job: {exc}") from exc

    def _job(self, job_id: str) -> JobDir:
        job = self._store.job(job_id)
        if job is None:
            raise BackendError(f"no LoRA job {job_id} in {self._store.jobs}", status=404)
        return job

    def _current(self, job_id: str) -> Job:
        job = self._job(job_id)
        state = job.read()
        if state.status in ACTIVE and not job.worker_alive():
            message = f"the training process exited unexpectedly; see {job.log_path}"
            tail = job.log_tail()
            error = {"code": "worker_exited", "message": f"{message} ({tail})" if tail else message}
            # Moves only if still active: the worker may have finished just now.
            moved, state = job.move("failed", error=error)
            if moved:
                job.event(f"Fine-tuning job failed: {error['message']}", level="error")
        return state.as_job()

    async def get_job(self, job_id: str) -> Job:
        """The job as its files say (a job whose process died is marked failed)."""
        try:
            return await asyncio.to_thread(self._current, job_id)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read LoRA job {job_id}: {exc}") from exc

    async def list_events(self, job_id: str, limit: int = 100) -> list[JobEvent]:
        """The job's last ``limit`` events, oldest first."""
        return await asyncio.to_thread(lambda: self._job(job_id).events(limit))

    def _cancel(self, job_id: str) -> Job:
        job = self._job(job_id)
        moved, state = job.move("cancelled")
        if not moved:
            msg = f"Job {job_id} has already {state.status}; only a running job can be cancelled."
            raise BackendError(msg, status=400)
        if state.pid is not None:
            _stop(job, state.pid)
        job.event("Fine-tuning job cancelled")
        return state.as_job()

    async def cancel_job(self, job_id: str) -> Job:
        """Mark the job cancelled, then stop its process group (SIGTERM, then SIGKILL)."""
        return await asyncio.to_thread(self._cancel, job_id)

    async def find_job(self, metadata: Mapping[str, str]) -> Job | None:
        """The newest job whose metadata holds every given pair."""
        wanted = dict(metadata)
        for state in await asyncio.to_thread(self._store.states):
            if all(state.metadata.get(k) == v for k, v in wanted.items()):
                return state.as_job()
        return None

    async def aclose(self) -> None:
        """Nothing to close: jobs live on in their own processes."""


def _stop(job: JobDir, pid: int) -> None:
    """Stop the worker's process group, waiting (bounded) until its lock is free."""
    # Only while the lock is held is ``pid`` still our worker (a pid can be reused).
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        if not job.worker_alive():
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while job.worker_alive() and time.monotonic() < deadline:
            time.sleep(0.05)


def open_lora_backend(settings: Settings) -> LoraBackend:
    """The factory registered as ``lora``: the vLLM server is ``lora.server_url`` or upstream."""
    lora = settings.finetune.lora
    key = lora.server_api_key or settings.upstream.api_key
    return LoraBackend(
        lora,
        server_url=lora.server_url or settings.upstream.base_url,
        server_api_key=key.get_secret_value() or None,
    )
