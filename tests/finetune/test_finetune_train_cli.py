"""``tara finetune start | status | cancel`` end to end against a real ``tara sandbox``.

The command runs in a worker thread (it owns its event loop, as it does
from a shell) while the sandbox serves from the test's loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from test_finetune_backend import KEY, build_dataset, sandbox_training_for

from tara.cli import main


def _env(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("TARA_FINETUNE__BASE_URL", url)
    monkeypatch.setenv("TARA_FINETUNE__API_KEY", KEY)
    monkeypatch.setenv("TARA_FINETUNE__POLL_INTERVAL", "0.02")
    monkeypatch.setenv("TARA_FINETUNE__RETRY_INITIAL_BACKOFF", "0.001")
    monkeypatch.setenv("TARA_FINETUNE__RETRY_MAX_BACKOFF", "0.01")


async def _tara(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def _tara_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, err = await _tara(capsys, *argv, "--json")
    assert err == ""
    return code, json.loads(out)


async def _job_ids(url: str) -> list[str]:
    async with openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0) as sdk:
        return [job.id async for job in sdk.fine_tuning.jobs.list()]


async def test_start_status_follow_and_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = await build_dataset(tmp_path / "ds", count=60)
    ds = str(dataset.directory)
    # Long enough that the first status still sees the job running on a loaded machine.
    async with sandbox_training_for(2.0) as url:
        _env(monkeypatch, url)
        code, out, _ = await _tara(capsys, "finetune", "start", ds)
        assert code == 0
        assert out.startswith("created job ftjob-")
        code, report = await _tara_json(capsys, "finetune", "status", ds)
        assert code == 0
        assert report["job"]["status"] in ("validating_files", "queued", "running")
        assert report["run"]["dataset_hash"] == dataset.hash
        code, out, _ = await _tara(capsys, "finetune", "status", ds, "--follow")
        assert code == 0
        assert "Fine-tuning job started" in out
        assert "succeeded" in out
        code, report = await _tara_json(capsys, "finetune", "status", ds)
        job, progress = report["job"], report["progress"]
        assert job["status"] == "succeeded"
        assert progress["step"] == progress["total_steps"]
        assert progress["trained_tokens"] == job["trained_tokens"] > 0
        assert progress["train_loss"] < 1.0
        assert report["run"]["fine_tuned_model"] == job["fine_tuned_model"]
        async with openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0) as sdk:
            answer = await sdk.chat.completions.create(
                model=job["fine_tuned_model"],
                messages=[{"role": "user", "content": "भिन्न क्या है?"}],
            )
        assert answer.model == job["fine_tuned_model"]
        code, out, _ = await _tara(capsys, "finetune", "start", ds)
        assert code == 0
        assert "already exists for this run (succeeded); not creating another" in out
        (dataset.directory / "runs.json").unlink()
        code, again = await _tara_json(capsys, "finetune", "start", ds)
        assert code == 0
        assert again["action"] == "reused"
        assert again["job"]["id"] == job["id"]
        assert await _job_ids(url) == [job["id"]]


async def test_transient_errors_during_start_are_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    async with sandbox_training_for(0) as url:
        _env(monkeypatch, url)
        root = url.removesuffix("/v1")
        async with openai.AsyncOpenAI(base_url=root, api_key=KEY) as raw:
            await raw.post("/sandbox/fine_tuning/faults", body={"before": 1}, cast_to=object)
            code, started = await _tara_json(capsys, "finetune", "start", str(dataset.directory))
            faults = await raw.get("/sandbox/fine_tuning/faults", cast_to=object)
        assert code == 0
        assert started["action"] == "created"
        assert faults == {"before": 0, "after": 0, "injected": 1}
        assert await _job_ids(url) == [started["job"]["id"]]


async def test_cancel_then_start_needs_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    ds = str(dataset.directory)
    monkeypatch.setenv("TARA_FINETUNE__STATE_DIR", str(tmp_path / "state"))
    async with sandbox_training_for(60) as url:
        _env(monkeypatch, url)
        code, started = await _tara_json(capsys, "finetune", "start", ds)
        assert code == 0
        code, cancelled = await _tara_json(capsys, "finetune", "cancel", ds)
        assert code == 0
        assert cancelled["job"]["status"] == "cancelled"
        assert cancelled["job"]["id"] == started["job"]["id"]
        assert (tmp_path / "state" / "runs.json").is_file()
        code, out, _ = await _tara(capsys, "finetune", "start", ds)
        assert code == 1
        assert "run again with --force" in out
        code, forced = await _tara_json(capsys, "finetune", "start", ds, "--force")
        assert code == 0
        assert forced["action"] == "created"
        code, out, _ = await _tara(capsys, "finetune", "cancel", "--job", forced["job"]["id"])
        assert (code, out) == (0, f"job {forced['job']['id']}: cancelled\n")
        code, out, err = await _tara(capsys, "finetune", "cancel", "--job", forced["job"]["id"])
        assert code == 1
        assert "already cancelled" in err


async def test_an_invalid_dataset_fails_its_job_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = await build_dataset(tmp_path / "ds")
    # A dataset written by some other tool: a line without an assistant answer.
    broken = dataset.train.read_bytes() + b'{"messages": [{"role": "user", "content": "hi"}]}\n'
    dataset.train.write_bytes(broken)
    manifest_path = dataset.directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["train.jsonl"]["sha256"] = hashlib.sha256(broken).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    lines = broken.count(b"\n")
    async with sandbox_training_for(0) as url:
        _env(monkeypatch, url)
        assert (await _tara(capsys, "finetune", "start", str(dataset.directory)))[0] == 0
        code, report = await _tara_json(
            capsys, "finetune", "status", str(dataset.directory), "--follow"
        )
        assert code == 1
        assert report["job"]["status"] == "failed"
        assert report["job"]["error"] == {
            "code": "invalid_training_file",
            "message": f"Invalid file format. Line {lines}: the example has no assistant "
            "message to learn from.",
            "param": None,
        }
        code, out, _ = await _tara(capsys, "finetune", "status", str(dataset.directory))
        assert code == 0
        assert "error (invalid_training_file): Invalid file format." in out


async def test_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await _tara(capsys, "finetune", "start", str(tmp_path))
    assert code == 2
    assert "no manifest.json: run `tara finetune prepare` first" in err
    monkeypatch.setenv("TARA_FINETUNE__BACKEND", "nope")
    code, _, err = await _tara(capsys, "finetune", "status", str(tmp_path))
    assert code == 2
    assert "unknown finetune.backend 'nope'" in err
    monkeypatch.delenv("TARA_FINETUNE__BACKEND")
    dataset = await build_dataset(tmp_path / "ds")
    async with sandbox_training_for(0) as url:
        _env(monkeypatch, url)
        code, _, err = await _tara(capsys, "finetune", "status", str(dataset.directory))
        assert code == 2
        assert "no fine-tuning job for" in err
        code, _, err = await _tara(capsys, "finetune", "status", "--job", "ftjob-nope")
        assert code == 1
        assert "HTTP 404: Could not find fine tune: ftjob-nope" in err
