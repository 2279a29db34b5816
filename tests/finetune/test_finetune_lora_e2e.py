"""The open-weight path end to end, on the CPU: prepare → LoRA training → vLLM load → gate → canary.

Everything real but the GPU: a tiny Llama with random weights and a
tokenizer trained on the dataset are written in the test (no download, the
hub offline); ``tara finetune start`` (backend ``lora``) trains an adapter
with TRL and PEFT in its own process; the adapter is loaded into ``tara
sandbox`` through the emulated vLLM endpoint; ``tara finetune evaluate``
gates it against stable through that server; and a real gateway on
loopback routes a canary student to the adapter's model name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from lora_support import build_tiny_chat_model
from prometheus_client import CollectorRegistry
from test_finetune_samples import corpus

from tara.cli import main
from tara.gateway.server import gateway_from_settings
from tara.sandbox.server import running_sandbox
from tara.serving import running_server
from tara.settings import DEV_ADMIN_KEY, DEV_CLIENT_KEY, Settings
from tcp_relay import REDIS_URL

# The gateway keeps its routing table in Redis: rollouts need state a controller could see.
pytestmark = [pytest.mark.integration, pytest.mark.redis]


async def _tara(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out


async def _tara_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out = await _tara(capsys, *argv, "--json")
    return code, json.loads(out)


def _export(path: Path) -> Path:
    items = corpus({("en", "physics"): 40, ("hi", "math"): 40})
    path.write_bytes(b"".join(orjson.dumps(dataclasses.asdict(ix)) + b"\n" for ix in items))
    return path


def dataset_texts(dataset: Path) -> list[str]:
    texts = []
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl"):
        for line in (dataset / name).read_bytes().splitlines():
            texts += [m["content"] for m in orjson.loads(line)["messages"]]
    return texts


def lora_env(monkeypatch: pytest.MonkeyPatch, sandbox: str, work: Path, **extra: str) -> None:
    """Settings of a quick CPU training against the sandbox (``TARA_*`` variables)."""
    values = {
        "HF_HUB_OFFLINE": "1",
        # One thread: a tiny model gains nothing from more, and CI's two cores are shared.
        "OMP_NUM_THREADS": "1",
        "TARA_UPSTREAM__BASE_URL": sandbox,
        "TARA_FINETUNE__BACKEND": "lora",
        "TARA_FINETUNE__POLL_INTERVAL": "0.1",
        "TARA_FINETUNE__N_EPOCHS": "2",
        "TARA_FINETUNE__BATCH_SIZE": "8",
        # 10 × the documented base rate (2e-2): a tiny random model needs big steps to learn.
        "TARA_FINETUNE__LEARNING_RATE_MULTIPLIER": "10",
        "TARA_FINETUNE__LORA__WORK_DIR": str(work),
        "TARA_FINETUNE__LORA__LOGGING_STEPS": "1",
        "TARA_FINETUNE__LORA__EVAL_STEPS": "4",
        "TARA_FINETUNE__LORA__MAX_LENGTH": "128",
        "TARA_FINETUNE__LORA__DEVICE": "cpu",
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _reload_with_peft(base: Path, adapter: Path) -> tuple[float, str]:
    """The adapter loaded back onto the base: the largest LoRA B weight, and a short answer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' own deprecation notes
        model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base, local_files_only=True), adapter
        )
        tokenizer = AutoTokenizer.from_pretrained(adapter, local_files_only=True)
        lora_b = max(float(p.abs().max()) for n, p in model.named_parameters() if "lora_B" in n)
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": "What is Newton's second law?"}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    return lora_b, tokenizer.decode(out[0][prompt["input_ids"].shape[1] :])


async def _canary_answer(gateway: str, candidate: str) -> httpx.Response:
    admin = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
    client = {"Authorization": f"Bearer {DEV_CLIENT_KEY}"}
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        started = await http.post(
            "/admin/rollouts", json={"track": "tara-tutor", "candidate": candidate}, headers=admin
        )
        assert started.status_code == 201, started.text
        for number in range(500):  # the first stage sends ~10% of students to the canary
            answer = await http.post(
                "/v1/chat/completions",
                headers={**client, "X-Tara-User": f"student-{number}"},
                json={"model": "tara-tutor", "messages": [{"role": "user", "content": "7 x 8?"}]},
            )
            assert answer.status_code == 200, answer.text
            if answer.headers["X-Tara-Variant"] == "canary":
                return answer
    pytest.fail("no student out of 500 was routed to the canary")


@pytest.mark.timeout(300)  # PyTorch imports take a while on a loaded CI machine
async def test_a_lora_adapter_trains_on_the_cpu_and_serves_a_canary(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_client: aioredis.Redis,
    namespace: str,
) -> None:
    dataset, work, state = tmp_path / "ds", tmp_path / "lora", tmp_path / "state"
    async with running_sandbox(seed=3) as sandbox:
        lora_env(
            monkeypatch,
            sandbox,
            work,
            TARA_FINETUNE__EVALUATION__STATE_DIR=str(state),
            TARA_FINETUNE__EVALUATION__JUDGE_MODEL="tara-judge",
            TARA_FINETUNE__EVALUATION__GATE__LATENCY_SLACK_MS="5000",
            TARA_FINETUNE__SPLIT__TRAIN="0.6",
            TARA_FINETUNE__SPLIT__VALIDATION="0.2",
            TARA_FINETUNE__SPLIT__TEST="0.2",
        )
        argv = ("finetune", "prepare", "--from-jsonl", str(_export(tmp_path / "export.jsonl")))
        code, out = await _tara(capsys, *argv, "--output", str(dataset), "--min-interactions", "20")
        assert code == 0, out
        base = build_tiny_chat_model(tmp_path / "base", dataset_texts(dataset))
        monkeypatch.setenv("TARA_FINETUNE__BASE_MODEL", str(base))

        code, out = await _tara(capsys, "finetune", "start", str(dataset))
        assert code == 0, out
        assert out.startswith("created job ftjob-lora-")
        code, out = await _tara(capsys, "finetune", "status", str(dataset), "--follow")
        assert code == 0, out
        code, status = await _tara_json(capsys, "finetune", "status", str(dataset))
        job, progress = status["job"], status["progress"]
        assert job["status"] == "succeeded", status
        name = job["fine_tuned_model"]
        assert name.startswith("ft:base:tara:")
        assert progress["step"] == progress["total_steps"] >= 8
        assert progress["valid_loss"] is not None
        assert progress["trained_tokens"] > 0
        losses = [e["data"]["train_loss"] for e in status["events"] if e["type"] == "metrics"]
        assert sum(losses[-3:]) / 3 < losses[0], losses  # from chance level down

        # The server lists the adapter; PEFT loads what it loaded.
        adapter = work / "adapters" / name
        async with httpx.AsyncClient(headers={"Authorization": "Bearer sk-test"}) as http:
            listed = (await http.get(f"{sandbox}/models")).json()["data"]
        [entry] = [m for m in listed if m["id"] == name]
        assert (entry["root"], entry["parent"]) == (str(adapter.resolve()), str(base.resolve()))
        lora_b, generated = await asyncio.to_thread(_reload_with_peft, base, adapter)
        assert lora_b > 0  # B starts at zero: training moved it
        assert isinstance(generated, str)

        argv = ("finetune", "evaluate", "--dataset", str(dataset), "--candidate", name)
        code, report = await _tara_json(capsys, *argv, "--stable", "tara-stable")
        assert (code, report["outcome"]) == (0, "pass"), report
        assert report["candidate"]["samples"] >= 10

        settings = Settings(
            redis_url=REDIS_URL,
            redis_namespace=namespace,
            upstream={"base_url": sandbox},
            telemetry={"sqlite_path": tmp_path / "log.db"},
        )
        gateway = gateway_from_settings(settings, registry=CollectorRegistry())
        async with running_server(gateway) as base_url:
            answer = await _canary_answer(base_url, name)
        assert answer.headers["X-Tara-Model"] == name
        assert answer.json()["choices"][0]["message"]["content"]
