"""The gateway never loads the training libraries, nor what serving on memory state needs not.

PyTorch and transformers take seconds and hundreds of megabytes to import;
only the LoRA training process (``tara.finetune.lora_worker``) may. Checked
in fresh interpreters: the modules of the gateway, controller, triggers and
the LoRA backend itself import none of them, and a real ``tara serve``
answering requests never does either (a finder that kills the process on
such an import stands guard).

``tara serve`` on the embedded defaults (state in process memory, SQLite
log) must also stay clear of numpy, the Redis client, asyncpg and the OpenAI
SDK: together they were ~30 MiB of its resident memory (bench/bench_soak.py,
docs/operations.md "Memory bounds"), and serving uses none of them. The same
guard watches a real ``tara serve`` streaming answers to more students than a
window bucket counts exactly, taking feedback, and listing its rollouts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tara.sandbox import running_sandbox
from tara.serving import free_port
from tara.settings import DEV_ADMIN_KEY, DEV_CLIENT_KEY
from tara.telemetry.student_sketch import StudentSketch

pytestmark = pytest.mark.integration

TRAINING = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")

NOT_FOR_SERVING = ("numpy", "scipy", "pandas", "redis", "asyncpg", "openai", "httpx")
"""Top-level packages ``tara serve`` on memory state and SQLite must not load."""


def guard(forbidden: tuple[str, ...]) -> str:
    """Code that ends the interpreter (status 3) on an import of a ``forbidden`` package."""
    return f"""
import importlib.abc, os, sys
class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {forbidden!r}:
            sys.stderr.write(f"FORBIDDEN IMPORT {{name}}\\n")
            sys.stderr.flush()
            os._exit(3)
        return None
sys.meta_path.insert(0, Guard())
"""


GUARD = guard(TRAINING)


def test_the_long_running_parts_import_no_training_library() -> None:
    modules = [
        "tara.cli",
        "tara.gateway.server",
        "tara.gateway.app",
        "tara.rollout.controller_server",
        "tara.triggers.check",
        "tara.finetune.train_cli",
        "tara.finetune.backend_lora",
        "tara.finetune.lora_worker",
    ]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({TRAINING!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
    # The guard itself works: importing torch under it ends the process.
    guarded = subprocess.run(
        [sys.executable, "-c", GUARD + "import torch"], capture_output=True, text=True, timeout=60
    )
    assert guarded.returncode == 3
    assert "FORBIDDEN IMPORT torch" in guarded.stderr


def test_tara_serve_answers_without_importing_a_training_library(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    env = {
        **os.environ,
        "TARA_STATE_BACKEND": "memory",
        "TARA_TELEMETRY__SQLITE_PATH": str(tmp_path / "log.db"),
        "TARA_FINETUNE__BACKEND": "lora",
    }
    script = GUARD + f"from tara.cli import main\nsys.exit(main(['serve', '--port', '{port}']))"
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(600):  # bounded: 60 s
                if server.poll() is not None:
                    break
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            headers = {"Authorization": f"Bearer {DEV_CLIENT_KEY}"}
            assert http.get("/v1/models", headers=headers).status_code == 200
            assert http.get("/metrics").status_code == 200
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    _assert_stopped_clean(server, stderr)


def test_the_serve_entry_on_memory_state_imports_nothing_heavy(tmp_path: Path) -> None:
    # A fresh interpreter builds the gateway as `tara serve` does and counts a
    # busy bucket's students (the sketch past its exact range), then lists
    # which of the heavy packages it loaded.
    code = f"""
import sys
from tara.cli import build_parser
from tara.gateway.server import gateway_from_settings
from tara.settings import Settings
from tara.telemetry.student_sketch import StudentSketch
build_parser().parse_args(["serve"])
gateway_from_settings(Settings(telemetry={{"sqlite_path": {str(tmp_path / "log.db")!r}}}))
sketch = StudentSketch()
for i in range(StudentSketch.EXACT_UP_TO + 10):
    sketch.add(f"student-{{i}}")
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({NOT_FOR_SERVING!r})))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARA_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_tara_serve_streams_on_memory_state_without_heavy_imports(tmp_path: Path) -> None:
    students = StudentSketch.EXACT_UP_TO + 44  # one window bucket past exact counting
    async with running_sandbox(seed=5) as upstream:
        port = free_port("127.0.0.1")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TARA_")},
            "TARA_LOG_LEVEL": "INFO",
            "TARA_UPSTREAM__BASE_URL": upstream,
            "TARA_TELEMETRY__SQLITE_PATH": str(tmp_path / "log.db"),
            "TARA_TELEMETRY__SPOOL_PATH": str(tmp_path / "spool.jsonl"),
        }
        serve = f"from tara.cli import main\nsys.exit(main(['serve', '--port', '{port}']))"
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on in a thread
            [sys.executable, "-c", guard(TRAINING + NOT_FOR_SERVING) + serve],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            client_auth = {"Authorization": f"Bearer {DEV_CLIENT_KEY}"}
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                for _ in range(600):  # bounded: 60 s
                    if server.poll() is not None:
                        pytest.fail(f"tara serve exited: {server.communicate()[1]}")
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)

                async def ask(i: int) -> str:
                    body = {
                        "model": "tara-tutor",
                        "messages": [{"role": "user", "content": f"What is {i} x 8?"}],
                        "stream": True,
                    }
                    headers = {**client_auth, "X-Tara-User": f"student-{i}"}
                    async with http.stream(
                        "POST", "/v1/chat/completions", json=body, headers=headers
                    ) as response:
                        assert response.status_code == 200
                        await response.aread()
                        return response.headers["X-Tara-Request-Id"]

                ids: list[str] = []
                for start in range(0, students, 50):
                    ids += await asyncio.gather(*(ask(i) for i in range(start, start + 50)))
                rating = {"request_id": ids[0], "rating": 5}
                feedback = await http.post("/v1/feedback", json=rating, headers=client_auth)
                assert feedback.status_code < 300, feedback.text
                admin = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
                assert (await http.get("/admin/rollouts", headers=admin)).status_code == 200
                assert (await http.get("/metrics")).status_code == 200
            server.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(server.communicate, timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
    _assert_stopped_clean(server, stderr)


def _assert_stopped_clean(server: subprocess.Popen[str], stderr: str) -> None:
    """The guarded server imported nothing forbidden and shut down on SIGTERM."""
    assert "FORBIDDEN IMPORT" not in stderr, stderr
    assert "gateway stopping" in stderr
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert server.returncode in (0, -signal.SIGTERM), stderr
