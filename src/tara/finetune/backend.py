"""The training-backend Protocol: what ``tara finetune start|status|cancel`` needs.

A backend uploads files, creates, reads and cancels jobs, lists their
events, and finds a job by its metadata (which is how a re-run never
creates a second job, even when the local run registry is lost). Backends
are picked by ``finetune.backend``: a name registered in :data:`BACKENDS`
(``openai``, ``lora``) or a ``package.module:factory`` path, where ``factory`` takes
the :class:`~tara.settings.Settings` and returns a :class:`TrainingBackend`.
Failures reach callers as :class:`BackendError` after the backend's own
retries, never as a provider's exception type.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tara.settings import Settings

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class BackendError(Exception):
    """A backend call failed for good; ``transient`` if retrying later may help."""

    def __init__(self, message: str, *, transient: bool = False, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """What a supervised job is trained with."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


@dataclass(frozen=True, slots=True)
class JobRequest:
    """Everything a backend needs to create one supervised fine-tuning job."""

    model: str
    training_file: str
    validation_file: str | None
    hyperparameters: Hyperparameters
    suffix: str | None
    metadata: Mapping[str, str]
    """Pairs the job carries; :meth:`TrainingBackend.find_job` finds it by them."""


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed."""

    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A fine-tuning job as the backend reports it."""

    id: str
    status: str
    """``validating_files``, ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
    model: str
    created_at: int
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    trained_tokens: int | None = None
    estimated_finish: int | None = None
    error: JobError | None = None
    training_file: str | None = None
    validation_file: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the job will not change any more."""
        return self.status in TERMINAL_STATUSES

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One line of a job's log; ``data`` holds metrics (step, losses, tokens) when present."""

    id: str
    created_at: int
    level: str
    message: str
    type: str = "message"
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return asdict(self)


class TrainingBackend(Protocol):
    """A provider that fine-tunes chat models on JSONL files."""

    name: str

    def check_base_model(self, model: str) -> None:
        """Raise :class:`BackendError` naming what is accepted if ``model`` cannot be
        fine-tuned here; called before anything is uploaded."""
        ...

    async def upload_file(self, path: Path) -> str:
        """Upload a training or validation file; return its id."""
        ...

    async def create_job(self, request: JobRequest) -> Job:
        """Create a job. A retried call must not leave two jobs with ``request.metadata``."""
        ...

    async def get_job(self, job_id: str) -> Job:
        """The job as it is now."""
        ...

    async def list_events(self, job_id: str, limit: int = 100) -> list[JobEvent]:
        """The job's most recent ``limit`` events, oldest first."""
        ...

    async def cancel_job(self, job_id: str) -> Job:
        """Ask the backend to stop the job; return it as it is after the request."""
        ...

    async def find_job(self, metadata: Mapping[str, str]) -> Job | None:
        """The newest job whose metadata holds every pair of ``metadata``, or None."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


BackendFactory = Callable[["Settings"], TrainingBackend]

BACKENDS: dict[str, str] = {
    "openai": "tara.finetune.backend_openai:open_openai_backend",
    "lora": "tara.finetune.backend_lora:open_lora_backend",
}
"""Registered backend names and the ``module:factory`` each stands for."""


def register_backend(name: str, target: str) -> None:
    """Make ``finetune.backend = name`` open ``target`` (``package.module:factory``)."""
    BACKENDS[name] = target


def open_backend(settings: Settings) -> TrainingBackend:
    """The backend ``settings.finetune.backend`` names; ValueError if it names none."""
    name = settings.finetune.backend
    target = BACKENDS.get(name, name)
    module_name, _, attribute = target.partition(":")
    if not attribute:
        known = ", ".join(sorted(BACKENDS))
        msg = f"unknown finetune.backend {name!r}: use one of {known} or 'package.module:factory'"
        raise ValueError(msg)
    try:
        factory: BackendFactory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot load finetune.backend {name!r} ({target}): {exc}"
        raise ValueError(msg) from exc
    return factory(settings)
