"""The gateway never loads the training libraries, even with the ``train`` extra installed.

PyTorch and transformers take seconds and hundreds of megabytes to import;
only the LoRA training process (``tara.finetune.lora_worker``) may. Checked
in fresh interpreters: the modules of the gateway, controller, triggers and
the LoRA backend itself import none of them, and a real ``tara serve``
answering requests never does either (a finder that kills the process on
such an import stands guard).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tara.serving import free_port
from tara.settings import DEV_CLIENT_KEY

pytestmark = pytest.mark.integration

TRAINING = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")

GUARD = f"""
import importlib.abc, os, sys
class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING!r}:
            sys.stderr.write(f"FORBIDDEN IMPORT {{name}}\\n")
            sys.stderr.flush()
            os._exit(3)
        return None
sys.meta_path.insert(0, Guard())
"""


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
    assert "FORBIDDEN IMPORT" not in stderr, stderr
    assert "gateway stopping" in stderr
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert server.returncode in (0, -signal.SIGTERM), stderr
