"""The sandbox's files and fine-tuning routes, through the real ``openai`` SDK."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from sandbox_support import KEY

from tara.sandbox import default_config, running_sandbox, zero_latency
from tara.sandbox.config import FineTuningConfig, SandboxConfig
from tara.sandbox.training import Hyperparameters, loss_points, plan_job, resolve, tuned_quality
from tara.sandbox.training_data import check_bytes

AUTH = {"Authorization": f"Bearer {KEY}"}
HP = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 0.1}


def _config(seconds: float = 0.0) -> SandboxConfig:
    config = zero_latency(default_config())
    return config.model_copy(update={"fine_tuning": FineTuningConfig(training_seconds=seconds)})


def _example(i: int) -> dict[str, object]:
    return {
        "messages": [
            {"role": "system", "content": "You are Tara, a caring Indian female AI tutor."},
            {"role": "user", "content": f"What is {i} times 3?"},
            {"role": "assistant", "content": f"{i} times 3 is {3 * i}. Count three {i} times."},
        ]
    }


def _jsonl(count: int, extra: list[str] | None = None) -> bytes:
    lines = [json.dumps(_example(i), ensure_ascii=False) for i in range(count)]
    return ("\n".join(lines + (extra or [])) + "\n").encode()


@pytest.fixture
async def sdk() -> AsyncIterator[openai.AsyncOpenAI]:
    async with (
        running_sandbox(_config(), seed=3) as url,
        openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0) as client,
    ):
        yield client


async def _upload(client: openai.AsyncOpenAI, content: bytes, name: str = "train.jsonl") -> str:
    created = await client.files.create(file=(name, io.BytesIO(content)), purpose="fine-tune")
    return created.id


async def _finished(
    client: openai.AsyncOpenAI, job_id: str
) -> openai.types.fine_tuning.FineTuningJob:
    for _ in range(200):
        job = await client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish")


async def test_a_job_trains_and_its_model_is_served(sdk: openai.AsyncOpenAI) -> None:
    train = await _upload(sdk, _jsonl(40))
    valid = await _upload(sdk, _jsonl(5), "validation.jsonl")
    file = await sdk.files.retrieve(train)
    assert (file.purpose, file.filename, file.bytes) == (
        "fine-tune",
        "train.jsonl",
        len(_jsonl(40)),
    )
    created = await sdk.fine_tuning.jobs.create(
        model="gpt-4-0613",
        training_file=train,
        validation_file=valid,
        method={"type": "supervised", "supervised": {"hyperparameters": HP}},  # type: ignore[typeddict-item]
        suffix="tara",
        metadata={"tara_dataset": "abc"},
    )
    assert created.status == "validating_files"
    job = await _finished(sdk, created.id)
    assert job.status == "succeeded"
    assert job.hyperparameters.batch_size == 4
    assert job.fine_tuned_model == f"ft:gpt-4-0613:tara:{job.id.removeprefix('ftjob-')[:8]}"
    assert job.trained_tokens is not None
    assert job.trained_tokens > 0
    events = [e async for e in sdk.fine_tuning.jobs.list_events(job.id, limit=7)]
    assert events[0].message == "The job has successfully completed"
    metrics = [e.data for e in reversed(events) if e.type == "metrics"]
    all_metrics = [
        e.data async for e in sdk.fine_tuning.jobs.list_events(job.id) if e.type == "metrics"
    ][::-1]
    assert len(all_metrics) == 30  # ceil(40 / 4) * 3 steps, one event each
    assert metrics
    assert all_metrics[-1]["step"] == 30
    assert all_metrics[-1]["train_loss"] < all_metrics[0]["train_loss"] / 2  # type: ignore[index]
    answer = await sdk.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "What is 7 times 3?"}]
    )
    assert answer.choices[0].message.content
    tuned = await sdk.models.retrieve(job.fine_tuned_model)
    stable = await sdk.models.retrieve("tara-stable")
    assert tuned.quality > stable.quality  # type: ignore[attr-defined]


async def test_the_legacy_hyperparameters_form_and_listing(sdk: openai.AsyncOpenAI) -> None:
    train = await _upload(sdk, _jsonl(12))
    ids = []
    for i in range(3):
        job = await sdk.fine_tuning.jobs.create(
            model="tara-stable",
            training_file=train,
            hyperparameters={"n_epochs": 1, "batch_size": "auto"},
            metadata={"run": str(i % 2)},
        )
        ids.append(job.id)
    assert job.hyperparameters.n_epochs == 1
    listed = [j.id async for j in sdk.fine_tuning.jobs.list(limit=1)]
    assert listed == ids[::-1]  # newest first, across pages of one
    assert [j.id async for j in sdk.fine_tuning.jobs.list(metadata={"run": "0"})] == [
        ids[2],
        ids[0],
    ]
    assert [j.id async for j in sdk.fine_tuning.jobs.list(metadata={"run": "9"})] == []


async def test_an_invalid_file_fails_the_job_with_a_clear_error(sdk: openai.AsyncOpenAI) -> None:
    bad = _jsonl(12, ['{"messages": [{"role": "user", "content": "no answer here"}]}'])
    job = await sdk.fine_tuning.jobs.create(
        model="gpt-4-0613", training_file=await _upload(sdk, bad)
    )
    job = await _finished(sdk, job.id)
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.code == "invalid_training_file"
    assert job.error.message == (
        "Invalid file format. Line 13: the example has no assistant message to learn from."
    )
    events = [e async for e in sdk.fine_tuning.jobs.list_events(job.id)]
    assert events[0].level == "error"
    few = await sdk.fine_tuning.jobs.create(
        model="gpt-4-0613", training_file=await _upload(sdk, _jsonl(3))
    )
    few = await _finished(sdk, few.id)
    assert few.error is not None
    assert "has 3 example(s), but must have at least 10" in few.error.message


async def test_requests_that_are_refused(sdk: openai.AsyncOpenAI) -> None:
    train = await _upload(sdk, _jsonl(12))
    with pytest.raises(openai.BadRequestError, match="invalid training_file: file-nope"):
        await sdk.fine_tuning.jobs.create(model="m", training_file="file-nope")
    with pytest.raises(openai.BadRequestError, match=r"hyperparameters\.n_epochs"):
        await sdk.fine_tuning.jobs.create(
            model="m", training_file=train, hyperparameters={"n_epochs": 0}
        )
    with pytest.raises(openai.BadRequestError, match="suffix"):
        await sdk.fine_tuning.jobs.create(model="m", training_file=train, suffix="x" * 65)
    with pytest.raises(openai.BadRequestError, match="supervised"):
        await sdk.fine_tuning.jobs.create(model="m", training_file=train, method={"type": "dpo"})
    with pytest.raises(openai.NotFoundError, match="ftjob-missing"):
        await sdk.fine_tuning.jobs.retrieve("ftjob-missing")
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve("file-missing")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        await sdk.files.create(file=("a.jsonl", io.BytesIO(b"{}")), purpose="nonsense")  # type: ignore[arg-type]


async def test_cancel_stops_a_running_job() -> None:
    async with (
        running_sandbox(_config(seconds=60), seed=1) as url,
        openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0) as sdk,
    ):
        job = await sdk.fine_tuning.jobs.create(
            model="gpt-4-0613", training_file=await _upload(sdk, _jsonl(20))
        )
        cancelled = await sdk.fine_tuning.jobs.cancel(job.id)
        assert cancelled.status == "cancelled"
        assert (await sdk.fine_tuning.jobs.retrieve(job.id)).fine_tuned_model is None
        with pytest.raises(openai.BadRequestError, match="already cancelled"):
            await sdk.fine_tuning.jobs.cancel(job.id)


async def test_faults_answer_503_before_or_after_the_work() -> None:
    async with running_sandbox(_config(), seed=1) as url, httpx.AsyncClient(headers=AUTH) as http:
        root = url.removesuffix("/v1")
        r = await http.post(f"{root}/sandbox/fine_tuning/faults", json={"before": 1, "after": 1})
        assert r.json() == {"before": 1, "after": 1}
        assert (await http.get(f"{url}/fine_tuning/jobs")).status_code == 503
        files = {"file": ("t.jsonl", _jsonl(12)), "purpose": (None, "fine-tune")}
        lost = await http.post(f"{url}/files", files=files)
        assert lost.status_code == 503
        assert (await http.get(f"{url}/fine_tuning/jobs")).status_code == 200
        shown = (await http.get(f"{root}/sandbox/fine_tuning/faults")).json()
        assert shown == {"before": 0, "after": 0, "injected": 2}
        bad = await http.post(f"{root}/sandbox/fine_tuning/faults", json={"before": -1})
        assert bad.status_code == 400


def test_file_checks() -> None:
    assert check_bytes(_jsonl(3)).examples == 3
    assert check_bytes(b"").problem == "Invalid file format. The file holds no training examples."
    assert check_bytes(b"not json\n").problem == "Invalid file format. Line 1: not valid JSON."
    assert "JSON object" in (check_bytes(b"[1]").problem or "")
    assert "non-empty list" in (check_bytes(b'{"messages": []}').problem or "")
    wrong_role = b'{"messages": [{"role": "robot", "content": "x"}]}'
    assert "unrecognised role 'robot'" in (check_bytes(wrong_role).problem or "")
    no_text = b'{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}'
    assert 'message 1 ("user") has no text "content"' in (check_bytes(no_text).problem or "")


def test_loss_falls_and_quality_gain_is_bounded() -> None:
    hp = Hyperparameters(n_epochs=3, batch_size=16, learning_rate_multiplier=0.1)
    points = loss_points(random.Random(0), 600, hp, tokens_per_step=100)
    assert len(points) == 40
    assert points[-1]["step"] == 600
    assert points[-1]["trained_tokens"] == 60_000
    assert points[-1]["train_loss"] < points[0]["train_loss"] * 0.5
    config = FineTuningConfig()
    assert tuned_quality(0.75, config, 0, None) == 0.75
    assert tuned_quality(0.75, config, 500, None) == pytest.approx(0.825)
    assert tuned_quality(0.75, config, 10**9, None) <= 0.9
    assert tuned_quality(0.75, config, 500, 3.0) == 0.75
    assert tuned_quality(0.95, config, 10**9, 5.0) == 1.0
    assert resolve({}, 5000) == Hyperparameters(3, 10, 2.0)
    assert [m.kind for m in plan_job(random.Random(0), "bad", 10, 10, hp)] == ["failed"]
    plan = plan_job(random.Random(0), None, 32, 320, hp)
    assert [m.kind for m in plan][:2] == ["queued", "running"]
    assert plan[-1].kind == "succeeded"
    assert plan[-1].data == {"trained_tokens": 960}
    assert [m.at for m in plan] == sorted(m.at for m in plan)
