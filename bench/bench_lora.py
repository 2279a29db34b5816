"""The open-weight path on a GPU against a real vLLM: train, load at run time, stream a canary.

    python bench/bench_lora.py --model /models/Qwen2.5-0.5B-Instruct [--vllm-url URL] [--json]

What ``tests/finetune/test_finetune_lora_e2e.py`` does on the CPU with the
sandbox, here with the real pieces: a small local chat model (a directory;
nothing is downloaded), vLLM's OpenAI-compatible server with ``--enable-lora``
and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (started here unless
``--vllm-url`` names a running one), the LoRA backend training on the GPU,
the adapter loaded through ``/v1/load_lora_adapter``, and one streamed answer
through ``tara serve`` to a student the canary serves. It prints the timings
and the loss curve (docs/benchmarks.md describes the output).

It cannot run without a CUDA GPU and vLLM, and says so (exit code 2).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from procs import TARA, child
from tara.serving import free_port
from tara.telemetry.interactions import Interaction

KEY = "sk-bench-lora"
SERVED = "tara-base"
QUESTIONS = {
    "en": ("What is {a} times {b}?", "{a} times {b} is {c}: add {a} to itself {b} times."),
    "hi": ("{a} गुणा {b} कितना होता है?", "{a} गुणा {b} बराबर {c} होता है।"),
}


def preconditions(vllm_url: str | None) -> str | None:
    """Why the benchmark cannot run here, or None."""
    if importlib.util.find_spec("torch") is None:
        return "needs the training extra: pip install -e '.[train]'"
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA GPU: PyTorch sees none (this benchmark runs where one is)"
    if vllm_url is None and importlib.util.find_spec("vllm") is None:
        return "needs vLLM: pip install vllm, or pass --vllm-url of a running server"
    return None


def export(path: Path, per_language: int = 150) -> Path:
    """Rated tutoring interactions (maths in English and Hindi) as a JSONL export."""
    rows = []
    for language, (question, answer) in QUESTIONS.items():
        for i in range(per_language):
            a, b = 3 + i % 17, 2 + i // 17
            ix = Interaction(
                request_id=f"{language}-{i}",
                created_at=1_700_000_000.0 + i,
                track="tara-tutor",
                segment="default",
                variant="stable",
                model=SERVED,
                student_hash=f"s{i}",
                subject="math",
                language=language,
                grade="6",
                status=200,
                messages=[{"role": "user", "content": question.format(a=a, b=b)}],
                answer=answer.format(a=a, b=b, c=a * b),
                rating=5,
            )
            rows.append(orjson.dumps(dataclasses.asdict(ix)))
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


def tara(env: dict[str, str], *argv: str) -> str:
    """Run a ``tara`` command; its output (exits with it on failure)."""
    done = subprocess.run([TARA, *argv], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"tara {' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def vllm_server(model: Path, url: str | None) -> Iterator[str]:
    """A running vLLM with runtime LoRA loading: ``url``, or one started here."""
    if url is not None:
        yield url
        return
    port = free_port("127.0.0.1")
    args = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", f"--model={model}"]
    args += [f"--served-model-name={SERVED}", "--enable-lora", "--max-lora-rank=16"]
    args += [f"--port={port}", "--gpu-memory-utilization=0.5", f"--api-key={KEY}"]
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "HF_HUB_OFFLINE": "1"}
    with child(args, f"http://127.0.0.1:{port}/health", env, ready_timeout=900):
        yield f"http://127.0.0.1:{port}/v1"


def stream_canary(gateway: str, candidate: str) -> dict[str, Any]:
    """Start a rollout and stream one answer to the first student the canary serves."""
    admin = {"Authorization": "Bearer sk-tara-admin-dev"}
    with httpx.Client(base_url=gateway, timeout=120) as http:
        started = http.post(
            "/admin/rollouts", json={"track": "tara-tutor", "candidate": candidate}, headers=admin
        )
        started.raise_for_status()
        body = {
            "model": "tara-tutor",
            "stream": True,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "What is 7 times 8?"}],
        }
        for number in range(1000):
            headers = {"Authorization": "Bearer sk-tara-dev", "X-Tara-User": f"student-{number}"}
            sent = time.perf_counter()
            first: float | None = None
            text = ""
            with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                r.raise_for_status()
                if r.headers["X-Tara-Variant"] != "canary":
                    continue
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    delta = json.loads(line[6:])["choices"]
                    if delta and delta[0]["delta"].get("content"):
                        first = first or time.perf_counter() - sent
                        text += delta[0]["delta"]["content"]
            return {
                "model": r.headers["X-Tara-Model"],
                "ttft_s": round(first or 0.0, 3),
                "total_s": round(time.perf_counter() - sent, 3),
                "answer": text,
            }
    sys.exit("no student out of 1000 was routed to the canary")


def main() -> int:
    """Run the path once and print what it measured."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, required=True, help="a local chat model directory")
    parser.add_argument("--vllm-url", default=None, help="a running vLLM (…/v1) instead of one")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args()
    problem = preconditions(args.vllm_url)
    if problem is not None:
        print(f"bench_lora: {problem}", file=sys.stderr)
        return 2
    if not (args.model / "config.json").is_file():
        print(f"bench_lora: {args.model} is not a model directory", file=sys.stderr)
        return 2
    import torch

    work = Path(tempfile.mkdtemp(prefix="tara-bench-lora-"))
    with vllm_server(args.model.resolve(), args.vllm_url) as vllm:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TARA_UPSTREAM__BASE_URL": vllm,
            "TARA_UPSTREAM__API_KEY": KEY,
            "TARA_STATE_BACKEND": "memory",
            "TARA_TELEMETRY__SQLITE_PATH": str(work / "log.db"),
            "TARA_TRACKS": json.dumps({"tara-tutor": {"stable_model": SERVED}}),
            "TARA_FINETUNE__BACKEND": "lora",
            "TARA_FINETUNE__BASE_MODEL": str(args.model.resolve()),
            "TARA_FINETUNE__LORA__WORK_DIR": str(work / "lora"),
            "TARA_FINETUNE__POLL_INTERVAL": "1",
        }
        dataset = work / "ds"
        tara(
            env,
            "finetune",
            "prepare",
            "--from-jsonl",
            str(export(work / "export.jsonl")),
            "--output",
            str(dataset),
            "--min-interactions",
            "50",
        )
        started = time.perf_counter()
        tara(env, "finetune", "start", str(dataset))
        tara(env, "finetune", "status", str(dataset), "--follow")
        train_s = time.perf_counter() - started
        status = json.loads(tara(env, "finetune", "status", str(dataset), "--json"))
        adapter = status["job"]["fine_tuned_model"]
        losses = [e["data"]["train_loss"] for e in status["events"] if e["type"] == "metrics"]
        port = free_port("127.0.0.1")
        with child([TARA, "serve", "--port", str(port)], f"http://127.0.0.1:{port}/readyz", env):
            canary = stream_canary(f"http://127.0.0.1:{port}", adapter)
    summary = {
        "gpu": torch.cuda.get_device_name(0),
        "base_model": str(args.model),
        "adapter": adapter,
        "train_seconds": round(train_s, 1),
        "steps": status["progress"]["total_steps"],
        "train_loss": {"first": losses[0], "last": losses[-1]} if losses else None,
        "valid_loss": status["progress"]["valid_loss"],
        "canary": canary,
    }
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(
            f"GPU {summary['gpu']}: trained {adapter} in {summary['train_seconds']} s "
            f"({summary['steps']} steps, loss {summary['train_loss']})"
        )
        print(
            f"canary {canary['model']}: first token {canary['ttft_s']} s, "
            f"whole answer {canary['total_s']} s: {canary['answer']!r}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
