"""The LoRA backend's jobs on disk: one directory per job, its state, events and worker lock.

::

    work_dir/files/<file id>.jsonl      uploaded training and validation files (by content)
    work_dir/jobs/<job id>/job.json     the job's state, replaced atomically under job.lock
    work_dir/jobs/<job id>/spec.json    what the training process is asked to do
    work_dir/jobs/<job id>/events.jsonl progress and messages, one JSON object a line
    work_dir/jobs/<job id>/worker.lock  held (flock) by the training process while it lives
    work_dir/jobs/<job id>/worker.log   the training process's output
    work_dir/adapters/<model name>/     trained adapters, in PEFT's format, for vLLM to load

Every process that changes ``job.json`` (the worker, ``cancel``, ``status``
noticing a dead worker) does so under an ``flock`` on ``job.lock``, so a
cancel and a finishing worker cannot both win. Whether the worker lives is
read from its lock, not its pid: the kernel drops the lock when the process
dies, however it dies, and a recycled pid cannot fake it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from tara.atomic_files import write_atomically
from tara.finetune.backend import Job, JobError, JobEvent

ACTIVE = frozenset({"validating_files", "queued", "running"})


@dataclass(slots=True)
class JobState:
    """What ``job.json`` holds."""

    id: str
    status: str
    model: str
    created_at: int
    training_file: str
    validation_file: str | None
    metadata: dict[str, str]
    fine_tuned_model: str | None = None
    """Set once the adapter is trained and loaded (the name the server serves it under)."""
    finished_at: int | None = None
    trained_tokens: int | None = None
    error: dict[str, str] | None = None
    pid: int | None = None

    def as_job(self) -> Job:
        """The backend-neutral :class:`~tara.finetune.backend.Job`."""
        error = None
        if self.error is not None:
            error = JobError(self.error.get("code", "error"), self.error.get("message", ""))
        return Job(
            id=self.id,
            status=self.status,
            model=self.model,
            created_at=self.created_at,
            fine_tuned_model=self.fine_tuned_model,
            finished_at=self.finished_at,
            trained_tokens=self.trained_tokens,
            error=error,
            training_file=self.training_file,
            validation_file=self.validation_file,
            metadata=dict(self.metadata),
        )


_FIELDS = frozenset(f.name for f in fields(JobState))


@dataclass(frozen=True, slots=True)
class JobDir:
    """One job's directory."""

    path: Path

    @property
    def spec_path(self) -> Path:
        """The training process's instructions."""
        return self.path / "spec.json"

    @property
    def log_path(self) -> Path:
        """The training process's output."""
        return self.path / "worker.log"

    @property
    def lock_path(self) -> Path:
        """Held by the training process while it runs."""
        return self.path / "worker.lock"

    def read(self) -> JobState:
        """The job's state; ValueError if ``job.json`` is not one."""
        state_path = self.path / "job.json"
        try:
            data = orjson.loads(state_path.read_bytes())
            return JobState(**{k: v for k, v in data.items() if k in _FIELDS})
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            msg = f"{state_path} is not a LoRA job ({exc})"
            raise ValueError(msg) from exc

    def write(self, state: JobState) -> None:
        """Replace the state (call under :meth:`locked`, or before anyone else knows the job)."""
        write_atomically(self.path / "job.json", orjson.dumps(asdict(state)))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``job.lock`` (serialises every read-modify-write of ``job.json``)."""
        with (self.path / "job.lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def move(self, status: str, **changes: Any) -> tuple[bool, JobState]:
        """Move a job that is still active to ``status`` (setting ``changes``), under the lock.

        Returns whether it moved (a job already finished stays as it is) and the state.
        """
        with self.locked():
            state = self.read()
            if state.status not in ACTIVE:
                return False, state
            state.status = status
            if status not in ACTIVE:
                state.finished_at = int(time.time())
            for name, value in changes.items():
                setattr(state, name, value)
            self.write(state)
            return True, state

    def event(self, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        """Append an event (``metrics`` when it carries data); one write, so lines never mix."""
        line = {
            "id": f"ftevent-{secrets.token_hex(8)}",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "type": "metrics" if data else "message",
            "data": data or {},
        }
        with (self.path / "events.jsonl").open("ab") as f:
            f.write(orjson.dumps(line) + b"\n")

    def events(self, limit: int) -> list[JobEvent]:
        """The last ``limit`` events, oldest first (a torn last line is skipped)."""
        try:
            lines = (self.path / "events.jsonl").read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out: list[JobEvent] = []
        for line in lines[-limit:] if limit > 0 else []:
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                out.append(JobEvent(**orjson.loads(line)))
        return out

    def worker_alive(self) -> bool:
        """Whether a process holds the worker lock (the training process lives)."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also drops the lock if we took it
        return False

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the worker's output, for an error message."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class JobStore:
    """The directories under ``work_dir``."""

    work_dir: Path
    new_id: Callable[[], str] = field(default=lambda: f"ftjob-lora-{secrets.token_hex(6)}")

    @property
    def files(self) -> Path:
        """Uploaded files."""
        return self.work_dir / "files"

    @property
    def jobs(self) -> Path:
        """One directory per job."""
        return self.work_dir / "jobs"

    @property
    def adapters(self) -> Path:
        """Trained adapters, by served model name."""
        return self.work_dir / "adapters"

    def create(self, state: JobState, spec: dict[str, Any]) -> JobDir:
        """A new job directory holding ``state`` and ``spec``."""
        job = JobDir(self.jobs / state.id)
        job.path.mkdir(parents=True)
        write_atomically(job.spec_path, orjson.dumps(spec, option=orjson.OPT_INDENT_2))
        job.write(state)
        return job

    def job(self, job_id: str) -> JobDir | None:
        """The job's directory, or None if there is no such job."""
        if "/" in job_id or job_id.startswith("."):
            return None
        job = JobDir(self.jobs / job_id)
        return job if (job.path / "job.json").is_file() else None

    def states(self) -> list[JobState]:
        """Every readable job, newest first."""
        found = []
        for path in self.jobs.glob("*/job.json") if self.jobs.is_dir() else []:
            with contextlib.suppress(ValueError, OSError):
                found.append(JobDir(path.parent).read())
        return sorted(found, key=lambda s: (s.created_at, s.id), reverse=True)
