"""The OpenAI training backend and the idempotent start, against a real ``tara sandbox``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from test_finetune_samples import corpus, stream

from tara.finetune.backend import BACKENDS, BackendError, Job, open_backend, register_backend
from tara.finetune.backend_openai import OpenAIBackend, open_openai_backend
from tara.finetune.config import FinetuneSettings
from tara.finetune.prepare import prepare
from tara.finetune.runs import RunRegistry
from tara.finetune.train import (
    META_RUN,
    Dataset,
    create_job,
    decide,
    load_dataset,
    run_key,
    start_run,
)
from tara.sandbox import default_config, running_sandbox, zero_latency
from tara.sandbox.config import FineTuningConfig
from tara.settings import Settings

KEY = "sk-test"


def _settings(url: str, **finetune: object) -> Settings:
    values: dict[str, object] = {
        "base_url": url,
        "retry_initial_backoff": 0.001,
        "retry_max_backoff": 0.01,
        "retry_attempts": 3,
        **finetune,
    }
    return Settings(finetune=FinetuneSettings.model_validate(values))


@contextlib.asynccontextmanager
async def sandbox_training_for(seconds: float) -> AsyncIterator[str]:
    """A zero-latency sandbox whose fine-tuning jobs take ``seconds``."""
    config = zero_latency(default_config())
    config = config.model_copy(update={"fine_tuning": FineTuningConfig(training_seconds=seconds)})
    async with running_sandbox(config, seed=5) as url:
        yield url


@pytest.fixture
async def sandbox() -> AsyncIterator[str]:
    async with sandbox_training_for(0) as url:
        yield url


@pytest.fixture
async def backend(sandbox: str) -> AsyncIterator[OpenAIBackend]:
    opened = open_openai_backend(_settings(sandbox))
    yield opened
    await opened.aclose()


async def build_dataset(directory: Path, count: int = 40) -> Dataset:
    """A dataset made by the real PREPARE phase from generated Hindi math interactions."""
    items = corpus({("hi", "math"): count})
    await prepare(stream(items), FinetuneSettings(min_interactions=10), directory)
    return load_dataset(directory)


async def _faults(url: str, before: int = 0, after: int = 0) -> int:
    root = url.removesuffix("/v1")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        r = await http.post(
            f"{root}/sandbox/fine_tuning/faults", json={"before": before, "after": after}
        )
        r.raise_for_status()
        injected: int = (await http.get(f"{root}/sandbox/fine_tuning/faults")).json()["injected"]
        return injected


async def _jobs(backend: OpenAIBackend) -> list[str]:
    return [j.id async for j in backend._client.fine_tuning.jobs.list()]


async def test_start_creates_one_job_however_often_it_is_run(
    backend: OpenAIBackend, tmp_path: Path
) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    settings = FinetuneSettings()
    registry = RunRegistry(dataset.directory)
    first = await start_run(backend, dataset, settings, registry)
    assert first.action == "created"
    assert first.job is not None
    assert first.job.metadata["tara_dataset"] == dataset.hash
    again = await start_run(backend, dataset, settings, registry)
    assert again.action == "reused"
    assert again.job is not None
    assert again.job.id == first.job.id
    registry.path.unlink()  # a lost local registry: the backend's list still knows the job
    lost = await start_run(backend, dataset, settings, registry)
    assert lost.action == "reused"
    assert lost.job is not None
    assert lost.job.id == first.job.id
    assert registry.get(run_key(dataset.hash, settings)) is not None
    assert await _jobs(backend) == [first.job.id]
    other = await start_run(
        backend, dataset, FinetuneSettings(base_model="gpt-4o-mini-2024-07-18"), registry
    )
    assert other.action == "created"
    assert len(await _jobs(backend)) == 2


async def test_a_failed_run_blocks_until_forced(tmp_path: Path) -> None:
    async with sandbox_training_for(60) as url:
        backend = open_openai_backend(_settings(url))
        try:
            await _blocks_until_forced(backend, tmp_path)
        finally:
            await backend.aclose()


async def _blocks_until_forced(backend: OpenAIBackend, tmp_path: Path) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    settings = FinetuneSettings(suffix=None)
    registry = RunRegistry(tmp_path / "state")
    first = await start_run(backend, dataset, settings, registry)
    assert first.job is not None
    cancelled = await backend.cancel_job(first.job.id)
    assert cancelled.status == "cancelled"
    blocked = await start_run(backend, dataset, settings, registry)
    assert blocked.action == "blocked"
    forced = await start_run(backend, dataset, settings, registry, force=True)
    assert forced.action == "created"
    assert forced.job is not None
    assert forced.job.metadata["tara_attempt"] == "2"
    assert forced.job.training_file == first.job.training_file  # the upload is reused
    assert forced.record.attempt == 2
    found = await backend.find_job({META_RUN: run_key(dataset.hash, settings)})
    assert found is not None
    assert found.id == forced.job.id


async def test_transient_errors_are_retried(
    sandbox: str, backend: OpenAIBackend, tmp_path: Path
) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    await _faults(sandbox, before=2)
    file_id = await backend.upload_file(dataset.train)
    assert file_id.startswith("file-")
    assert await _faults(sandbox) == 2


async def test_a_lost_create_response_does_not_make_a_second_job(
    sandbox: str, backend: OpenAIBackend, tmp_path: Path
) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    file_id = await backend.upload_file(dataset.train)
    await _faults(sandbox, after=1)  # the job is created, then its answer is "lost"
    job = await create_job(backend, FinetuneSettings(), (file_id, None), {"tara_run": "r1"})
    assert await _jobs(backend) == [job.id]


async def test_errors_become_backend_errors(sandbox: str, backend: OpenAIBackend) -> None:
    with pytest.raises(BackendError) as missing:
        await backend.get_job("ftjob-nope")
    assert missing.value.status == 404
    assert not missing.value.transient
    await _faults(sandbox, before=5)
    with pytest.raises(BackendError, match="HTTP 503") as busy:
        await backend.get_job("ftjob-nope")
    assert busy.value.transient
    assert await _faults(sandbox) == 3  # retry_attempts tries, then it gives up
    unreachable = open_openai_backend(_settings("http://127.0.0.1:9/v1", retry_attempts=1))
    with pytest.raises(BackendError, match="cannot reach") as down:
        await unreachable.get_job("ftjob-x")
    assert down.value.transient
    await unreachable.aclose()


async def test_events_come_oldest_first(backend: OpenAIBackend, tmp_path: Path) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    outcome = await start_run(backend, dataset, FinetuneSettings(), RunRegistry(tmp_path))
    assert outcome.job is not None
    job = outcome.job
    for _ in range(100):
        job = await backend.get_job(job.id)
        if job.finished:
            break
    assert job.status == "succeeded"
    assert job.fine_tuned_model is not None
    events = await backend.list_events(job.id, limit=1000)
    assert events[0].message.startswith("Validating training file")
    assert events[-1].message == "The job has successfully completed"
    assert [e.message for e in await backend.list_events(job.id, limit=2)] == [
        m.message for m in events[-2:]
    ]


def test_backends_are_picked_by_name_or_path(sandbox: str) -> None:
    assert isinstance(open_backend(_settings(sandbox)), OpenAIBackend)
    register_backend("again", "tara.finetune.backend_openai:open_openai_backend")
    try:
        assert isinstance(open_backend(_settings(sandbox, backend="again")), OpenAIBackend)
    finally:
        del BACKENDS["again"]
    with pytest.raises(ValueError, match=r"unknown finetune\.backend 'vertex'"):
        open_backend(_settings(sandbox, backend="vertex"))
    with pytest.raises(ValueError, match="cannot load"):
        open_backend(_settings(sandbox, backend="tara.nowhere:factory"))


def test_decide_reuses_live_jobs_and_blocks_failed_ones() -> None:
    def job(status: str) -> Job:
        return Job(id="j", status=status, model="m", created_at=0)

    assert decide(None, force=False) == "create"
    for status in ("validating_files", "queued", "running", "succeeded"):
        assert decide(job(status), force=True) == "reuse"
    for status in ("failed", "cancelled"):
        assert decide(job(status), force=False) == "blocked"
        assert decide(job(status), force=True) == "create"


async def test_datasets_are_checked_against_their_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no manifest\.json"):
        load_dataset(tmp_path)
    dataset = await build_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "manifest.json").write_text("[]")
    with pytest.raises(ValueError, match="not a dataset manifest"):
        load_dataset(dataset.directory)
    dataset = await build_dataset(tmp_path / "ds2")
    with dataset.train.open("a") as f:
        f.write("{}\n")
    with pytest.raises(ValueError, match="changed since it was prepared"):
        load_dataset(dataset.directory)
    assert run_key("a" * 64, FinetuneSettings()) != run_key("a" * 64, FinetuneSettings(n_epochs=4))


def test_a_corrupt_registry_is_reported(tmp_path: Path) -> None:
    registry = RunRegistry(tmp_path)
    assert registry.load() == {}
    registry.path.write_text("{not json")
    with pytest.raises(ValueError, match="not a run registry"):
        registry.load()


# --- the base model -------------------------------------------------------------------


def test_the_default_base_model_is_a_dated_generally_fine_tunable_one() -> None:
    default = FinetuneSettings().base_model
    assert default == "gpt-4.1-mini-2025-04-14"
    assert default in FinetuneSettings().fine_tunable_models
    assert "gpt-4-0613" not in FinetuneSettings().fine_tunable_models


async def test_a_base_model_the_backend_cannot_tune_is_refused_before_any_upload(
    backend: OpenAIBackend, tmp_path: Path
) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    legacy = FinetuneSettings(base_model="gpt-4-0613")
    registry = RunRegistry(tmp_path)
    with pytest.raises(BackendError, match="gpt-4-0613") as refused:
        await start_run(backend, dataset, legacy, registry)
    assert "gpt-4.1-mini-2025-04-14" in str(refused.value)  # names the allowed models
    assert "finetune.fine_tunable_models" in str(refused.value)
    assert not refused.value.transient
    assert all(r.training_file is None for r in registry.load().values())  # nothing uploaded
    assert await _jobs(backend) == []
    # A fine-tune of an allowed base can be tuned further.
    backend.check_base_model("ft:gpt-4o-mini-2024-07-18:tara::abc123")
    with pytest.raises(BackendError):
        backend.check_base_model("ft:gpt-4-0613:tara::abc123")


async def test_any_openai_compatible_service_lists_its_own_models(
    sandbox: str, tmp_path: Path
) -> None:
    settings = _settings(sandbox, base_model="tara-base", fine_tunable_models=["tara-base"])
    opened = open_backend(settings)
    assert isinstance(opened, OpenAIBackend)
    try:
        dataset = await build_dataset(tmp_path / "ds")
        outcome = await start_run(opened, dataset, settings.finetune, RunRegistry(tmp_path))
        assert outcome.action == "created"
        assert outcome.job is not None
        assert outcome.job.model == "tara-base"
    finally:
        await opened.aclose()
    unchecked = _settings(sandbox, base_model="anything", fine_tunable_models=[])
    open_openai_backend(unchecked).check_base_model("anything")  # an empty list checks nothing
