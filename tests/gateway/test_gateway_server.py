"""``tara serve``: composition from settings, and a real process draining on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
from gateway_harness import MESSAGES, UPSTREAM_KEY

from tara.gateway.server import gateway_from_settings, serve_command
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.sandbox import running_sandbox
from tara.sandbox.config import Latency, ModelBehaviour, default_config
from tara.serving import free_port
from tara.settings import Settings


def store_of(settings: Settings) -> object:
    return gateway_from_settings(settings).cache._store


def test_state_backend_picks_the_store() -> None:
    assert isinstance(store_of(Settings()), MemoryRoutingStore)
    redis = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert isinstance(store_of(redis), RedisRoutingStore)


def test_redis_backend_without_url_is_a_config_error(caplog: pytest.LogCaptureFixture) -> None:
    args = argparse.Namespace(host=None, port=None)
    assert serve_command(args, Settings(state_backend="redis")) == 2
    assert "redis_url is not set" in caplog.text


@pytest.mark.integration
async def test_serve_process_drains_a_stream_on_sigterm() -> None:
    slow = ModelBehaviour(
        latency=Latency(ttft_median_ms=0, ttft_sigma=0, token_delay_ms=15),
        min_sentences=4,
        max_sentences=4,
    )
    config = default_config().model_copy(update={"models": {"m-slow": slow}})
    async with running_sandbox(config, seed=3) as upstream:
        port = free_port()
        env = {
            **os.environ,
            "TARA_UPSTREAM__BASE_URL": upstream,
            "TARA_UPSTREAM__API_KEY": UPSTREAM_KEY,
            "TARA_TRACKS": json.dumps({"tara-tutor": {"stable_model": "m-slow"}}),
            "TARA_AUTH__CLIENT_KEYS": json.dumps(["sk-proc"]),
            "TARA_SERVER__SHUTDOWN_TIMEOUT": "10",
        }
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on in a thread
            [sys.executable, "-m", "tara", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(timeout=10) as client:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 20
                while True:
                    try:
                        if (await client.get(f"{base}/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert loop.time() < deadline, "tara serve never became ready"
                    await asyncio.sleep(0.1)
                body = {"model": "tara-tutor", "messages": MESSAGES, "stream": True}
                headers = {"Authorization": "Bearer sk-proc"}
                received = b""
                async with client.stream(
                    "POST", f"{base}/v1/chat/completions", json=body, headers=headers
                ) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_raw():
                        if not received:
                            proc.send_signal(signal.SIGTERM)
                        received += chunk
            _, err = await asyncio.to_thread(proc.communicate, timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        stderr = err.decode()
        code = proc.returncode
    assert received.endswith(b"data: [DONE]\n\n")
    assert code == 0  # a graceful drain is a success, not a death by signal
    assert "gateway stopping" in stderr
    assert "using the built-in development admin key" in stderr
    assert UPSTREAM_KEY not in stderr


def test_servers_freeze_the_start_up_heap_and_collect_young_objects_less_often() -> None:
    # In a fresh interpreter: the settings are process-wide.
    code = (
        "import gc; from tara.serving import GC_YOUNG_THRESHOLD, tune_gc"
        "; default = gc.get_threshold(); tune_gc(); young, middle, old = gc.get_threshold()"
        "; assert young == GC_YOUNG_THRESHOLD > default[0], young"
        "; assert (middle, old) == default[1:]"
        "; assert gc.get_freeze_count() > 1000, gc.get_freeze_count()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
