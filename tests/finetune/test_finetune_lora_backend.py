"""The LoRA backend's contract: files by content, jobs in their own process, cancel and crash.

Jobs run the real training process (``python -m tara.finetune.lora_worker``);
a cancelled one must stop training and stay cancelled, one whose process
dies must say so, and bad data must fail the job with the line at fault.
The mapping of the job's hyperparameters onto the trainer is a table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import orjson
import pytest
from lora_support import build_tiny_chat_model
from test_finetune_lora_e2e import dataset_texts, lora_env
from test_finetune_samples import corpus

from tara.cli import main
from tara.finetune.backend import BackendError, Hyperparameters, JobRequest
from tara.finetune.backend_lora import LoraBackend, adapter_name
from tara.finetune.lora_config import LoraSettings
from tara.finetune.lora_jobs import JobStore
from tara.finetune.lora_train import TrainingError, prompt_completion, training_plan
from waiting import eventually

HP = Hyperparameters(n_epochs=1, batch_size=4, learning_rate_multiplier=1.0)


@pytest.mark.parametrize(
    ("batch", "micro", "lr_multiplier", "expected"),
    [
        (16, 4, 0.1, (4, 4, 2e-4)),  # the strategy's defaults: 16 = 4 × 4, 0.1 × 2e-3
        (16, 32, 1.0, (16, 1, 2e-3)),  # a micro batch larger than the batch: no accumulation
        (10, 4, 2.0, (2, 5, 4e-3)),  # 4 does not divide 10: 2 × 5, exactly 10 per step
        (7, 4, 0.5, (1, 7, 1e-3)),  # a prime batch: one example at a time
    ],
)
def test_hyperparameters_map_onto_the_trainer(
    batch: int, micro: int, lr_multiplier: float, expected: tuple[int, int, float]
) -> None:
    hp = Hyperparameters(n_epochs=3, batch_size=batch, learning_rate_multiplier=lr_multiplier)
    plan = training_plan(hp, LoraSettings(micro_batch_size=micro))
    assert (plan.micro_batch_size, plan.gradient_accumulation_steps) == expected[:2]
    assert plan.learning_rate == pytest.approx(expected[2])
    assert (plan.batch_size, plan.epochs) == (batch, 3)


def test_a_chat_example_becomes_prompt_and_completion() -> None:
    messages = [
        {"role": "system", "content": "You are Tara."},
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "4."},
    ]
    assert prompt_completion({"messages": messages}, "x") == {
        "prompt": messages[:2],
        "completion": messages[2:],
    }
    for bad, why in [
        ({"messages": messages[:2]}, "last message must be the assistant"),
        ({"messages": messages[2:]}, "after a prompt"),
        ({"messages": [{"role": "user"}]}, "string 'role' and 'content'"),
        ({"text": "hi"}, "no 'messages' list"),
    ]:
        with pytest.raises(TrainingError, match=why):
            prompt_completion(bad, "train.jsonl line 3")


def test_adapter_names_follow_the_openai_pattern() -> None:
    assert adapter_name("/models/Qwen2.5-0.5B/", "tara", "ftjob-lora-0123456789ab") == (
        "ft:Qwen2.5-0.5B:tara:01234567"
    )
    assert adapter_name("Qwen/Qwen2.5-0.5B", None, "ftjob-lora-abc") == "ft:Qwen2.5-0.5B:abc"


def _backend(work: Path) -> LoraBackend:
    return LoraBackend(
        LoraSettings(work_dir=work), server_url="http://127.0.0.1:9/v1", server_api_key=None
    )


def _chat_file(path: Path, last_role: str = "assistant") -> Path:
    line = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": last_role, "content": "Hello"}]
    }
    path.write_bytes(orjson.dumps(line) + b"\n")
    return path


async def test_files_are_stored_once_by_content(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "work")
    first = await backend.upload_file(_chat_file(tmp_path / "a.jsonl"))
    assert await backend.upload_file(_chat_file(tmp_path / "b.jsonl")) == first
    other = await backend.upload_file(_chat_file(tmp_path / "c.jsonl", last_role="user"))
    assert other != first
    assert len(list((tmp_path / "work/files").iterdir())) == 2
    with pytest.raises(BackendError, match="cannot store"):
        await backend.upload_file(tmp_path / "missing.jsonl")
    with pytest.raises(BackendError, match="invalid training_file") as refused:
        await backend.create_job(
            JobRequest(
                model="m",
                training_file="file-nope",
                validation_file=None,
                hyperparameters=HP,
                suffix=None,
                metadata={},
            )
        )
    assert refused.value.status == 400
    with pytest.raises(BackendError) as unknown:
        await backend.get_job("ftjob-lora-nothing")
    assert unknown.value.status == 404


async def test_bad_data_fails_the_job_naming_the_line(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "work")
    file_id = await backend.upload_file(_chat_file(tmp_path / "bad.jsonl", last_role="user"))
    job = await backend.create_job(
        JobRequest(
            model=str(tmp_path),
            training_file=file_id,
            validation_file=None,
            hyperparameters=HP,
            suffix="tara",
            metadata={"tara_run": "r1"},
        )
    )
    found = await backend.find_job({"tara_run": "r1"})
    assert found is not None
    assert found.id == job.id
    assert await backend.find_job({"tara_run": "other"}) is None

    async def failed() -> bool:
        return (await backend.get_job(job.id)).status == "failed"

    await eventually(failed, "the job to fail", within=60)
    done = await backend.get_job(job.id)
    assert done.error is not None
    assert done.error.code == "training_failed"
    assert "line 1: the last message must be the assistant's answer" in done.error.message
    with pytest.raises(BackendError, match="has already failed") as refused:
        await backend.cancel_job(job.id)
    assert refused.value.status == 400


async def test_a_job_whose_process_dies_is_failed(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "work")
    file_id = await backend.upload_file(_chat_file(tmp_path / "data.jsonl"))
    job = await backend.create_job(
        JobRequest(
            model=str(tmp_path / "no-model"),
            training_file=file_id,
            validation_file=None,
            hyperparameters=HP,
            suffix=None,
            metadata={},
        )
    )
    jobs = JobStore(tmp_path / "work")
    await eventually(lambda: jobs.job(job.id).read().pid, "the worker to record its pid")  # type: ignore[union-attr]
    pid = jobs.job(job.id).read().pid  # type: ignore[union-attr]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    async def noticed() -> bool:
        return (await backend.get_job(job.id)).status != "running"

    await eventually(noticed, "the dead worker to be noticed", within=30)
    dead = await backend.get_job(job.id)
    assert dead.status == "failed"
    assert dead.error is not None
    assert dead.error.code == "worker_exited"
    assert "worker.log" in dead.error.message
    events = await backend.list_events(job.id)
    assert events[-1].level == "error"


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _prepare(tmp_path: Path) -> Path:
    export, dataset = tmp_path / "export.jsonl", tmp_path / "ds"
    items = corpus({("en", "physics"): 30})
    export.write_bytes(b"".join(orjson.dumps(dataclasses.asdict(ix)) + b"\n" for ix in items))
    argv = ["finetune", "prepare", "--from-jsonl", str(export), "--output", str(dataset)]
    assert main([*argv, "--min-interactions", "10"]) == 0
    return dataset


@pytest.mark.timeout(300)  # PyTorch imports take a while on a loaded CI machine
async def test_cancel_stops_training_and_the_job_stays_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, work = await asyncio.to_thread(_prepare, tmp_path), tmp_path / "work"
    base = build_tiny_chat_model(tmp_path / "base", dataset_texts(dataset))
    # Endless training: it only ends by being cancelled.
    lora_env(
        monkeypatch,
        "http://127.0.0.1:9/v1",
        work,
        TARA_FINETUNE__BASE_MODEL=str(base),
        TARA_FINETUNE__N_EPOCHS="100000",
    )
    assert await asyncio.to_thread(main, ["finetune", "start", str(dataset)]) == 0
    backend = _backend(work)
    [state] = JobStore(work).states()

    async def training() -> bool:
        job = await backend.get_job(state.id)
        assert job.status in ("queued", "running"), job.error
        return any(e.type == "metrics" for e in await backend.list_events(state.id))

    await eventually(training, "training steps", within=120)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["finetune", "cancel", str(dataset)]) == 0
    assert capsys.readouterr().out.strip() == f"job {state.id}: cancelled"
    job_dir = JobStore(work).job(state.id)
    assert job_dir is not None
    assert not job_dir.worker_alive()  # cancel returns once the process is gone
    pid = job_dir.read().pid
    assert pid is not None
    assert not _running(pid)
    assert (await backend.get_job(state.id)).status == "cancelled"
    steps = [e for e in await backend.list_events(state.id) if e.type == "metrics"]
    assert (await backend.list_events(state.id))[-1].message == "Fine-tuning job cancelled"
    # A cancelled run blocks a new job on the same data until --force.
    assert await asyncio.to_thread(main, ["finetune", "start", str(dataset)]) == 1
    assert len([e for e in await backend.list_events(state.id) if e.type == "metrics"]) == len(
        steps
    )


def test_the_lora_backend_accepts_local_weights_only(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "work")
    backend.check_base_model(str(tmp_path))  # a directory
    backend.check_base_model("Qwen/Qwen2.5-0.5B-Instruct")  # an id from the local cache
    with pytest.raises(BackendError, match="local model directory") as refused:
        backend.check_base_model("gpt-4.1-mini-2025-04-14")
    assert "gpt-4.1-mini-2025-04-14" in str(refused.value)
