"""Each step against the real sandbox: idempotent, retried while the API is away, failed for good.

``tara sandbox`` is the fine-tuning API, behind a TCP relay the tests cut
and restore (an outage as the client sees it); the interaction log is
filled through a real gateway by students asking Hindi-math questions.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loop_harness import (
    EN_PHYSICS,
    HI_MATH,
    Students,
    gateway_client,
    loop_settings,
    sandbox_config,
)
from prometheus_client import CollectorRegistry

from tara.finetune.backend import open_backend
from tara.gateway.server import gateway_from_settings
from tara.retrain.executor import StepRunner, build_dataset
from tara.retrain.steps import (
    CanaryStarted,
    CreateJob,
    JobSeen,
    Prepare,
    Prepared,
    StartCanary,
    Step,
    StepFailed,
    Upload,
    Uploaded,
    Waiting,
)
from tara.rollout.routing import Segment
from tara.rollout.service import RolloutService
from tara.sandbox.server import running_sandbox
from tara.serving import running_server
from tara.settings import Settings
from tara.state import open_state
from tcp_relay import TcpRelay
from waiting import eventually

pytestmark = pytest.mark.integration

SEGMENT = Segment("math", "hi")


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[str, TcpRelay]]:
    """The sandbox's URL, and a relay in front of it (started) with its URL."""
    async with running_sandbox(sandbox_config(), seed=3) as upstream:
        port = int(upstream.rsplit(":", 1)[1].split("/")[0])
        relay = TcpRelay(port)
        await relay.start()
        try:
            yield upstream, relay
        finally:
            await relay.stop()


def via(relay: TcpRelay, settings: Settings) -> Settings:
    """``settings`` with the fine-tuning API reached through the relay, one try per call."""
    finetune = settings.finetune.model_copy(
        update={"base_url": f"http://127.0.0.1:{relay.port}/v1", "retry_attempts": 1}
    )
    retrain = settings.retrain.model_copy(
        update={"step_attempts": 60, "step_backoff": 0.02, "step_max_backoff": 0.05}
    )
    return settings.model_copy(update={"finetune": finetune, "retrain": retrain})


def runner(settings: Settings) -> StepRunner:
    state = open_state(settings)
    return StepRunner(
        settings, RolloutService.over(state, settings), lambda: open_backend(settings)
    )


async def fill_log(settings: Settings, questions: int, others: int = 0) -> float:
    """Hindi-math (and ``others`` English-physics) questions through a real gateway, every
    answer rated 5; the time after."""
    gateway = gateway_from_settings(settings, CollectorRegistry())
    async with running_server(gateway) as url, gateway_client(url) as client:
        students = Students(client, taste=lambda *_: 5)
        for n in range(questions):
            await students.ask(HI_MATH, f"student-{n}")
        for n in range(others):
            await students.ask(EN_PHYSICS, f"student-{n}")
    return time.time() + 1


async def test_prepare_is_idempotent_and_reads_only_its_segment(
    tmp_path: Path, sandbox: tuple[str, TcpRelay]
) -> None:
    upstream, _relay = sandbox
    settings = loop_settings(tmp_path, upstream)
    until = await fill_log(settings, 40, others=15)
    step = Prepare("ft-1", "tara-tutor", SEGMENT, 0.0, until)
    first = await build_dataset(settings, step, tmp_path / "a")
    again = await build_dataset(settings, step, tmp_path / "a")
    assert isinstance(first, Prepared)
    assert again == first
    assert first.evidence["totals"]["read"] == 40  # not the 15 English-physics ones
    assert sum(first.examples.values()) == first.evidence["totals"]["kept"] >= 35


async def test_a_job_is_created_once_however_often_the_step_runs(
    tmp_path: Path, sandbox: tuple[str, TcpRelay]
) -> None:
    upstream, relay = sandbox
    settings = via(relay, loop_settings(tmp_path, upstream))
    until = await fill_log(settings, 30)
    steps = runner(settings)
    recipe = Prepare("ft-7", "tara-tutor", SEGMENT, 0.0, until)
    prepared = await steps.perform(recipe)
    assert isinstance(prepared, Prepared)
    uploaded = await steps.perform(
        Upload("ft-7", prepared.dataset_dir, prepared.dataset_hash, recipe)
    )
    assert isinstance(uploaded, Uploaded)
    create = CreateJob(
        "ft-7", prepared.dataset_hash, uploaded.training_file, uploaded.validation_file, SEGMENT
    )
    first = await steps.perform(create)
    again = await steps.perform(create)
    assert isinstance(first, JobSeen)
    assert isinstance(again, JobSeen)
    assert again.job_id == first.job_id
    found = await steps.backend.find_job({"tara_run": "ft-7", "tara_segment": "math:hi"})
    assert found is not None
    assert found.id == first.job_id
    await steps.aclose()


async def test_a_step_is_retried_while_the_api_is_away_then_succeeds(
    tmp_path: Path, sandbox: tuple[str, TcpRelay], caplog: pytest.LogCaptureFixture
) -> None:
    upstream, relay = sandbox
    settings = via(relay, loop_settings(tmp_path, upstream))
    until = await fill_log(settings, 30)
    steps = runner(settings)
    recipe = Prepare("ft-8", "tara-tutor", SEGMENT, 0.0, until)
    prepared = await steps.perform(recipe)
    assert isinstance(prepared, Prepared)
    await relay.stop()
    step = Upload("ft-8", prepared.dataset_dir, prepared.dataset_hash, recipe)
    with caplog.at_level(logging.WARNING, logger="tara.retrain.executor"):
        upload = asyncio.create_task(steps.perform(step))
        await eventually(lambda: "retrying" in caplog.text, "a retried upload")
        await relay.start()
        result = await upload
    assert isinstance(result, Uploaded), result
    await steps.aclose()


async def test_a_step_that_keeps_failing_or_cannot_succeed_fails_with_its_reason(
    tmp_path: Path, sandbox: tuple[str, TcpRelay], caplog: pytest.LogCaptureFixture
) -> None:
    upstream, relay = sandbox
    settings = via(relay, loop_settings(tmp_path, upstream))
    retrain = settings.retrain.model_copy(update={"step_attempts": 2})
    settings = settings.model_copy(update={"retrain": retrain})
    until = await fill_log(settings, 30)
    steps = runner(settings)
    recipe = Prepare("ft-9", "tara-tutor", SEGMENT, 0.0, until)
    prepared = await steps.perform(recipe)
    assert isinstance(prepared, Prepared)
    await relay.stop()
    away = await steps.perform(Upload("ft-9", prepared.dataset_dir, prepared.dataset_hash, recipe))
    assert isinstance(away, StepFailed), away
    assert away.step is Step.UPLOAD
    assert "cannot reach the fine-tuning API" in away.reason, away.reason
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tara.retrain.executor"):
        empty = await steps.perform(Prepare("ft-9", "tara-tutor", SEGMENT, until, until + 1))
    assert isinstance(empty, StepFailed)
    assert "holds no examples" in empty.reason
    assert "retrying" not in caplog.text  # nothing to train on is not worth a second try
    await steps.aclose()


async def test_a_step_that_needs_a_dataset_another_controller_built_builds_it_again(
    tmp_path: Path, sandbox: tuple[str, TcpRelay]
) -> None:
    upstream, relay = sandbox
    settings = via(relay, loop_settings(tmp_path, upstream))
    until = await fill_log(settings, 30)
    recipe = Prepare("ft-10", "tara-tutor", SEGMENT, 0.0, until)
    steps = runner(settings)
    # "Another controller" prepared it somewhere this one cannot see.
    elsewhere = await build_dataset(settings, recipe, tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "elsewhere")
    uploaded = await steps.perform(Upload("ft-10", "/gone", elsewhere.dataset_hash, recipe))
    assert isinstance(uploaded, Uploaded), uploaded
    assert (settings.retrain.data_dir / "ft-10" / "manifest.json").exists()
    # The log changed under it: rebuilding gives other data, and the run must not train on it.
    await fill_log(settings, 5)
    later = Prepare("ft-10", "tara-tutor", SEGMENT, 0.0, time.time() + 1)
    shutil.rmtree(settings.retrain.data_dir / "ft-10")
    changed = await steps.perform(Upload("ft-10", "/gone", elsewhere.dataset_hash, later))
    assert isinstance(changed, StepFailed)
    assert "was built again and differs" in changed.reason
    await steps.aclose()


async def test_the_canary_is_found_again_or_waits_for_an_overlapping_rollout(
    tmp_path: Path,
) -> None:
    settings = Settings(state_backend="memory", retrain={"data_dir": tmp_path})
    state = open_state(settings)
    service = RolloutService.over(state, settings)
    steps = StepRunner(settings, service, lambda: open_backend(settings))
    everyone = await service.start("tara-tutor", "tara-candidate-good")
    waits = await steps.perform(StartCanary("ft-1", "tara-tutor", SEGMENT, "ft:m:1"))
    assert isinstance(waits, Waiting)
    assert waits.reason.startswith("canary waits: track tara-tutor already has rollout")
    assert f"{everyone.id} (progressing) on segment all, which overlaps math:hi" in waits.reason
    await service.abort(everyone.id)
    started = await steps.perform(StartCanary("ft-1", "tara-tutor", SEGMENT, "ft:m:1"))
    assert isinstance(started, CanaryStarted)
    again = await steps.perform(StartCanary("ft-1", "tara-tutor", SEGMENT, "ft:m:1"))
    assert again == started  # found, not started twice
    rollout = await service.get(started.rollout_id)
    assert (rollout.segment, rollout.candidate_model) == (SEGMENT, "ft:m:1")
    assert rollout.history[0].actor == "run ft-1"
    unknown = await steps.perform(StartCanary("ft-1", "nope", SEGMENT, "ft:m:1"))
    assert isinstance(unknown, StepFailed)
    assert "unknown track 'nope'" in unknown.reason
