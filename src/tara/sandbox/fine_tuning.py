"""``/v1/fine_tuning/jobs``: create, list, retrieve, events and cancel, in OpenAI's shapes.

A created job walks ``validating_files → queued → running → succeeded``
over ``fine_tuning.training_seconds`` (see :class:`~tara.sandbox.config.FineTuningConfig`),
emitting message and metric events (a falling loss, trained tokens) as it
goes; the plan is computed up front by :mod:`tara.sandbox.training` and a
background task only sleeps and applies it. On success the sandbox serves
``ft:<base>:<suffix>:<id>`` with a quality derived from the data. A
training or validation file that failed its format check fails the job in
``validating_files`` with OpenAI's ``invalid_training_file`` error.

Listing supports ``limit``, ``after`` and ``metadata[key]=value`` filters;
events are listed newest first with ``limit`` and ``after`` like OpenAI's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tara.sandbox import files
from tara.sandbox.config import FineTuningConfig, ModelBehaviour
from tara.sandbox.errors import ApiError, bad_request
from tara.sandbox.files import FILES, guarded, json_response
from tara.sandbox.fine_tuning_request import JobRequest, parse_job_request
from tara.sandbox.state import STATE
from tara.sandbox.training import Hyperparameters, Milestone, plan_job, resolve, tuned_quality

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ORGANIZATION = "org-tara-sandbox"
MEAN_RATING_KEY = "tara_mean_rating"
"""Job metadata key whose value (a number 1..5) scales the quality gain, when present."""


@dataclass
class SandboxJob:
    """One job: what was asked, where it is, and what it said along the way."""

    id: str
    created_at: int
    request: JobRequest
    hp: Hyperparameters
    seed: int
    status: str = "validating_files"
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    trained_tokens: int | None = None
    estimated_finish: int | None = None
    error: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def event(self, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        """Record an event (``metrics`` when it carries data)."""
        self.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{self.id.removeprefix('ftjob-')}-{len(self.events):05d}",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "type": "metrics" if data else "message",
                "data": data or {},
            }
        )

    def as_json(self) -> dict[str, Any]:
        """OpenAI's ``fine_tuning.job`` object."""
        hyperparameters = self.hp.as_json()
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": self.created_at,
            "error": self.error,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "hyperparameters": hyperparameters,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            "model": self.request.model,
            "organization_id": ORGANIZATION,
            "result_files": [],
            "seed": self.seed,
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.request.training_file,
            "validation_file": self.request.validation_file,
            "estimated_finish": self.estimated_finish,
            "integrations": [],
            "metadata": self.request.metadata or None,
            "user_provided_suffix": self.request.suffix,
        }


@dataclass
class JobStore:
    """Jobs by id, in creation order, and the training settings."""

    config: FineTuningConfig
    jobs: dict[str, SandboxJob] = field(default_factory=dict)


JOBS: web.AppKey[JobStore] = web.AppKey("tara_sandbox_jobs", JobStore)


def _mean_rating(metadata: dict[str, str]) -> float | None:
    try:
        return float(metadata[MEAN_RATING_KEY])
    except (KeyError, ValueError):
        return None


def _tuned_behaviour(app: web.Application, job: SandboxJob, examples: int) -> ModelBehaviour:
    registry = app[STATE].registry
    config = app[JOBS].config
    base = registry.get(job.request.model)
    template = base or registry.get(config.template_model)
    quality = template.quality if template is not None else config.base_quality
    quality = tuned_quality(quality, config, examples, _mean_rating(job.request.metadata))
    return (template or ModelBehaviour()).model_copy(update={"quality": quality})


def _apply(app: web.Application, job: SandboxJob, milestone: Milestone, examples: int) -> None:
    data = milestone.data
    if milestone.kind == "failed":
        job.status, job.finished_at = "failed", int(time.time())
        job.error = {"code": "invalid_training_file", "message": data["message"], "param": None}
        job.event(f"Fine-tuning job failed: {data['message']}", level="error")
    elif milestone.kind == "queued":
        job.status = "queued"
        job.event("Files validated, moving job to queued state")
    elif milestone.kind == "running":
        job.status = "running"
        job.estimated_finish = int(time.time() + app[JOBS].config.training_seconds * 0.8)
        job.event(f"Fine-tuning job started ({data['total_steps']} steps)")
    elif milestone.kind == "metrics":
        message = f"Step {data['step']}/{data['total_steps']}: training loss={data['train_loss']}"
        job.event(f"{message}, validation loss={data['valid_loss']}", data=data)
    else:
        suffix = job.request.suffix
        short = job.id.removeprefix("ftjob-")[:8]
        name = ":".join(["ft", job.request.model, *([suffix] if suffix else []), short])
        app[STATE].registry.register(name, _tuned_behaviour(app, job, examples))
        job.fine_tuned_model, job.trained_tokens = name, data["trained_tokens"]
        job.status, job.finished_at, job.estimated_finish = "succeeded", int(time.time()), None
        job.event(f"New fine-tuned model created: {name}")
        job.event("The job has successfully completed")


async def _run(app: web.Application, job: SandboxJob, plan: list[Milestone], examples: int) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    seconds = app[JOBS].config.training_seconds
    for milestone in plan:
        delay = start + milestone.at * seconds - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        _apply(app, job, milestone, examples)


def _file_problem(app: web.Application, file_id: str | None, param: str) -> ApiError | None:
    if file_id is None:
        return None
    stored = app[FILES].files.get(file_id)
    if stored is None or stored.purpose != "fine-tune":
        return bad_request(f"invalid {param}: {file_id}", param)
    return None


@guarded
async def create_job(request: web.Request) -> web.StreamResponse:
    """Start a job on uploaded files; it trains in the background."""
    app = request.app
    job_request = parse_job_request(await request.read())
    if isinstance(job_request, ApiError):
        return job_request.response()
    for file_id, param in (
        (job_request.training_file, "training_file"),
        (job_request.validation_file, "validation_file"),
    ):
        refused = _file_problem(app, file_id, param)
        if refused is not None:
            return refused.response()
    stored = app[FILES].files
    training = stored[job_request.training_file].check
    validation = stored[job_request.validation_file].check if job_request.validation_file else None
    config = app[JOBS].config
    problem = training.problem
    if problem is None and training.examples < config.min_training_examples:
        problem = (
            f"Training file has {training.examples} example(s), but must have at least "
            f"{config.min_training_examples} examples"
        )
    if problem is None and validation is not None and validation.problem is not None:
        problem = f"Validation file: {validation.problem}"
    job_id = app[FILES].new_id("ftjob", app[STATE].seed)
    seed = job_request.seed if job_request.seed is not None else int(job_id[-8:], 16)
    hp = resolve(job_request.hyperparameters, training.examples)
    job = SandboxJob(job_id, int(time.time()), job_request, hp, seed)
    job.event(f"Validating training file: {job_request.training_file}")
    plan = plan_job(random.Random(seed), problem, training.examples, training.tokens, hp)
    app[JOBS].jobs[job_id] = job
    job.task = asyncio.create_task(_run(app, job, plan, training.examples))
    return json_response(job.as_json())


def _page(request: web.Request, items: list[dict[str, Any]]) -> web.Response:
    """``items`` (newest first) after the ``after`` cursor, at most ``limit`` of them."""
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        return bad_request("limit must be an integer from 1 to 100.", "limit").response()
    after = request.query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return json_response({"object": "list", "data": page, "has_more": len(items) > limit})


@guarded
async def list_jobs(request: web.Request) -> web.StreamResponse:
    """Jobs, newest first, filtered by ``metadata[key]=value`` pairs."""
    wanted = {
        key[len("metadata[") : -1]: value
        for key, value in request.query.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    jobs = [
        job.as_json()
        for job in reversed(request.app[JOBS].jobs.values())
        if all(job.request.metadata.get(k) == v for k, v in wanted.items())
    ]
    return _page(request, jobs)


def _job(request: web.Request) -> SandboxJob | web.Response:
    job_id = request.match_info["job_id"]
    job = request.app[JOBS].jobs.get(job_id)
    if job is None:
        error = ApiError(404, f"Could not find fine tune: {job_id}", code="fine_tune_not_found")
        return error.response()
    return job


@guarded
async def get_job(request: web.Request) -> web.StreamResponse:
    """One job."""
    job = _job(request)
    return job if isinstance(job, web.Response) else json_response(job.as_json())


@guarded
async def list_events(request: web.Request) -> web.StreamResponse:
    """A job's events, newest first."""
    job = _job(request)
    return job if isinstance(job, web.Response) else _page(request, job.events[::-1])


@guarded
async def cancel_job(request: web.Request) -> web.StreamResponse:
    """Stop a job that has not finished; 400 if it has."""
    job = _job(request)
    if isinstance(job, web.Response):
        return job
    if job.status in TERMINAL:
        msg = f"Job {job.id} has already {job.status}; only a running job can be cancelled."
        return bad_request(msg, code="invalid_state").response()
    if job.task is not None:
        job.task.cancel()
    job.status, job.estimated_finish = "cancelled", None
    job.event("Fine-tuning job cancelled")
    return json_response(job.as_json())


async def _stop_jobs(app: web.Application) -> None:
    tasks = [job.task for job in app[JOBS].jobs.values() if job.task is not None]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def install(app: web.Application, config: FineTuningConfig) -> None:
    """Add the file and fine-tuning routes and their state to ``app``."""
    files.install(app)
    app[JOBS] = JobStore(config)
    app.on_shutdown.append(_stop_jobs)
    router = app.router
    router.add_post("/v1/fine_tuning/jobs", create_job)
    router.add_get("/v1/fine_tuning/jobs", list_jobs)
    router.add_get("/v1/fine_tuning/jobs/{job_id}", get_job)
    router.add_get("/v1/fine_tuning/jobs/{job_id}/events", list_events)
    router.add_post("/v1/fine_tuning/jobs/{job_id}/cancel", cancel_job)
