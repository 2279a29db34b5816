"""The OpenAI training backend, through the official ``openai`` SDK.

Works against OpenAI and any provider that serves OpenAI's files and
fine-tuning API (``finetune.base_url``), including ``tara sandbox``. The
SDK's own retries are off; tenacity retries transient failures
(connection errors and timeouts, 408, 409, 429 and 5xx) with full-jitter
exponential backoff, so there is one retry policy and it is visible here.

Creating a job is the one call that must not simply be retried: the
server may have created the job and lost the answer. So before every
retry of ``create_job`` the backend looks for a job carrying the same
metadata and returns it if the first try did land.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from tara.finetune.backend import BackendError, Job, JobError, JobEvent, JobRequest

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

    from tara.finetune.config import FinetuneSettings
    from tara.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same call again may succeed."""
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def describe(exc: BaseException) -> str:
    """A one-line message for an SDK error (the API's own message when there is one)."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        return f"HTTP {exc.status_code}: {message or exc.message}"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach the fine-tuning API: {exc}"
    return str(exc)


def job_from_sdk(job: FineTuningJob) -> Job:
    """Our :class:`Job` from the SDK's object."""
    error = job.error
    return Job(
        id=job.id,
        status=job.status,
        model=job.model,
        created_at=job.created_at,
        fine_tuned_model=job.fine_tuned_model,
        finished_at=job.finished_at,
        trained_tokens=job.trained_tokens,
        estimated_finish=job.estimated_finish,
        error=JobError(error.code, error.message, error.param) if error and error.message else None,
        training_file=job.training_file,
        validation_file=job.validation_file,
        metadata=dict(job.metadata or {}),
    )


def event_from_sdk(event: FineTuningJobEvent) -> JobEvent:
    """Our :class:`JobEvent` from the SDK's object."""
    data = event.data if isinstance(event.data, dict) else {}
    return JobEvent(
        id=event.id,
        created_at=event.created_at,
        level=event.level,
        message=event.message,
        type=event.type or "message",
        data=data,
    )


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    log.warning("fine-tuning API call failed (try %d), retrying: %s", state.attempt_number, exc)


class OpenAIBackend:
    """:class:`~tara.finetune.backend.TrainingBackend` over an ``openai.AsyncOpenAI`` client."""

    name = "openai"

    def __init__(self, client: openai.AsyncOpenAI, settings: FinetuneSettings) -> None:
        self._client = client
        self._settings = settings

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        s = self._settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.retry_attempts),
            wait=wait_random_exponential(
                multiplier=s.retry_initial_backoff, max=s.retry_max_backoff
            ),
            retry=retry_if_exception(is_transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except openai.OpenAIError as exc:
            status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
            raise BackendError(describe(exc), transient=is_transient(exc), status=status) from exc
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def upload_file(self, path: Path) -> str:
        """Upload with ``purpose="fine-tune"``; the file is read again on each try."""

        async def upload() -> str:
            created = await self._client.files.create(file=path, purpose="fine-tune")
            return created.id

        return await self._call(upload)

    def check_base_model(self, model: str) -> None:
        """``model`` (or the base of an ``ft:<base>:...`` fine-tune) must be one of
        ``finetune.fine_tunable_models``; an empty list accepts anything."""
        allowed = self._settings.fine_tunable_models
        base = model.split(":")[1] if model.startswith("ft:") and model.count(":") >= 2 else model
        if not allowed or base in allowed:
            return
        msg = (
            f"finetune.base_model {model!r} cannot be fine-tuned through "
            f"{self._client.base_url}: use one of {', '.join(allowed)} (or a fine-tune of one, "
            "ft:<base>:...); for another OpenAI-compatible service, list the models it "
            "fine-tunes in finetune.fine_tunable_models"
        )
        raise BackendError(msg, status=400)

    async def create_job(self, request: JobRequest) -> Job:
        """Create a supervised job (the ``method`` form; top-level hyperparameters are
        deprecated), never twice: a retry first looks for the job the last try may have made."""
        tries = 0
        hyperparameters, metadata = request.hyperparameters, request.metadata
        method: Any = {
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "n_epochs": hyperparameters.n_epochs,
                    "batch_size": hyperparameters.batch_size,
                    "learning_rate_multiplier": hyperparameters.learning_rate_multiplier,
                }
            },
        }

        async def create() -> Job:
            nonlocal tries
            tries += 1
            if tries > 1:
                landed = await self._find(metadata)
                if landed is not None:
                    log.info(
                        "job %s was created by an earlier try; not creating another", landed.id
                    )
                    return landed
            validation_file = request.validation_file
            job = await self._client.fine_tuning.jobs.create(
                model=request.model,
                training_file=request.training_file,
                validation_file=validation_file if validation_file is not None else openai.omit,
                method=method,
                suffix=request.suffix if request.suffix is not None else openai.omit,
                metadata=dict(metadata),
            )
            return job_from_sdk(job)

        return await self._call(create)

    async def get_job(self, job_id: str) -> Job:
        """The job as it is now."""

        async def get() -> Job:
            return job_from_sdk(await self._client.fine_tuning.jobs.retrieve(job_id))

        return await self._call(get)

    async def list_events(self, job_id: str, limit: int = 100) -> list[JobEvent]:
        """The most recent ``limit`` events, oldest first (the API lists newest first)."""

        async def events() -> list[JobEvent]:
            found: list[JobEvent] = []
            pages = self._client.fine_tuning.jobs.list_events(job_id, limit=min(limit, 100))
            async for event in pages:
                found.append(event_from_sdk(event))
                if len(found) >= limit:
                    break
            return found[::-1]

        return await self._call(events)

    async def cancel_job(self, job_id: str) -> Job:
        """Ask for the job to stop."""

        async def cancel() -> Job:
            return job_from_sdk(await self._client.fine_tuning.jobs.cancel(job_id))

        return await self._call(cancel)

    async def _find(self, metadata: Mapping[str, str]) -> Job | None:
        wanted = dict(metadata)
        seen = 0
        # The filter is asked for, and checked here too: a provider may ignore it.
        async for job in self._client.fine_tuning.jobs.list(limit=100, metadata=wanted):
            if all((job.metadata or {}).get(k) == v for k, v in wanted.items()):
                return job_from_sdk(job)
            seen += 1
            if seen >= self._settings.job_scan_limit:
                break
        return None

    async def find_job(self, metadata: Mapping[str, str]) -> Job | None:
        """The newest job whose metadata holds every given pair (jobs are listed newest first)."""
        return await self._call(lambda: self._find(metadata))

    async def list_models(self) -> list[str]:
        """The ids the API lists (a retired model drops out; the retirement trigger reads it)."""

        async def models() -> list[str]:
            return [model.id async for model in self._client.models.list()]

        return await self._call(models)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()


def open_openai_backend(settings: Settings) -> OpenAIBackend:
    """The factory registered as ``openai``: ``finetune.base_url``/``api_key``, else upstream's."""
    finetune = settings.finetune
    api_key = finetune.api_key or settings.upstream.api_key
    client = openai.AsyncOpenAI(
        base_url=finetune.base_url or settings.upstream.base_url,
        api_key=api_key.get_secret_value(),
        max_retries=0,
        timeout=finetune.request_timeout,
    )
    return OpenAIBackend(client, finetune)
