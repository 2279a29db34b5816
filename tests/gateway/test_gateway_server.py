"""``tara serve``: composition from settings, and a real process draining on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gateway_harness import MESSAGES, UPSTREAM_KEY

from tara.gateway.server import dev_keys_refusal, gateway_from_settings, serve_command
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.sandbox import running_sandbox
from tara.sandbox.config import Latency, ModelBehaviour, default_config
from tara.serving import free_port
from tara.settings import Settings
from waiting import eventually


def store_of(settings: Settings) -> object:
    return gateway_from_settings(settings).cache._store


def test_state_backend_picks_the_store() -> None:
    assert isinstance(store_of(Settings()), MemoryRoutingStore)
    redis = Settings(redis_url="redis://127.0.0.1:6379/0")
    assert isinstance(store_of(redis), RedisRoutingStore)


def test_redis_backend_without_url_is_a_config_error(caplog: pytest.LogCaptureFixture) -> None:
    args = argparse.Namespace(host=None, port=None, insecure_dev_keys=False)
    assert serve_command(args, Settings(state_backend="redis")) == 2
    assert "redis_url is not set" in caplog.text


REAL_KEYS = {"client_keys": ["sk-real-client"], "admin_key": "sk-real-admin"}
REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("host", "settings", "named"),
    [
        ("0.0.0.0", {}, ["TARA_AUTH__CLIENT_KEYS", "TARA_AUTH__ADMIN_KEY"]),
        ("10.1.2.3", {}, ["TARA_AUTH__CLIENT_KEYS", "TARA_AUTH__ADMIN_KEY"]),
        ("gateway.internal", {}, ["TARA_AUTH__CLIENT_KEYS", "TARA_AUTH__ADMIN_KEY"]),
        ("127.0.0.1", {"redis_url": REDIS}, ["TARA_AUTH__CLIENT_KEYS", "TARA_AUTH__ADMIN_KEY"]),
        ("::1", {"database_url": "postgresql://db/tara"}, ["TARA_AUTH__CLIENT_KEYS"]),
        ("0.0.0.0", {"auth": {"admin_key": "sk-real-admin"}}, ["TARA_AUTH__CLIENT_KEYS"]),
        (
            "0.0.0.0",
            {"auth": {"client_keys": ["sk-real", "sk-tara-dev"]}},
            ["TARA_AUTH__CLIENT_KEYS", "TARA_AUTH__ADMIN_KEY"],
        ),
    ],
)
def test_dev_keys_are_refused_where_others_can_reach_the_gateway(
    host: str, settings: dict[str, object], named: list[str]
) -> None:
    if host == "::1":
        settings = {**settings, "auth": {"admin_key": "sk-real-admin"}}
    refusal = dev_keys_refusal(Settings(**settings), host)  # type: ignore[arg-type]
    assert refusal is not None
    for variable in named:
        assert variable in refusal
    for variable in {"TARA_AUTH__CLIENT_KEYS", "TARA_AUTH__ADMIN_KEY"} - set(named):
        assert variable not in refusal
    assert "--insecure-dev-keys" in refusal


@pytest.mark.parametrize(
    ("host", "settings"),
    [
        ("127.0.0.1", {}),
        ("localhost", {}),
        ("::1", {}),
        ("0.0.0.0", {"auth": REAL_KEYS}),
        ("127.0.0.1", {"redis_url": REDIS, "auth": REAL_KEYS}),
        ("0.0.0.0", {"auth": {"enabled": False}}),  # an explicit choice, warned about
    ],
)
def test_loopback_or_real_keys_start(host: str, settings: dict[str, object]) -> None:
    assert dev_keys_refusal(Settings(**settings), host) is None  # type: ignore[arg-type]


def serve_env(**variables: str) -> dict[str, str]:
    """The environment without the caller's TARA_* variables, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARA_")}
    return {**env, "TARA_LOG_LEVEL": "INFO", **variables}


async def until_ready(proc: subprocess.Popen[bytes], client: httpx.AsyncClient, base: str) -> None:
    """Wait for a ``tara serve`` process to answer ``/readyz`` with 200."""

    async def ready() -> bool:
        assert proc.poll() is None, "tara serve exited"
        try:
            return (await client.get(f"{base}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, "tara serve to be ready", within=30)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "variables"),
    [
        (["--host", "0.0.0.0"], {}),
        ([], {"TARA_REDIS_URL": REDIS}),
        ([], {"TARA_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"}),
    ],
)
def test_tara_serve_refuses_to_start_with_dev_keys(
    args: list[str], variables: dict[str, str]
) -> None:
    port = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "tara", "serve", "--port", port, *args],
        env=serve_env(**variables),
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "TARA_AUTH__CLIENT_KEYS" in stderr
    assert "TARA_AUTH__ADMIN_KEY" in stderr
    assert "--insecure-dev-keys" in stderr
    assert "sk-tara-dev" not in stderr


@pytest.mark.integration
@pytest.mark.redis
async def test_insecure_dev_keys_flag_lets_it_start(
    namespace: str, redis_client: object, tmp_path: Path
) -> None:
    del redis_client  # cleans the namespace afterwards
    port = free_port()
    env = serve_env(
        TARA_REDIS_URL=REDIS,
        TARA_REDIS_NAMESPACE=namespace,
        TARA_TELEMETRY__SQLITE_PATH=str(tmp_path / "interactions.db"),
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below
        [sys.executable, "-m", "tara", "serve", "--port", str(port), "--insecure-dev-keys"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            await until_ready(proc, client, f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    assert "built-in development" in err.decode()


@pytest.mark.integration
async def test_serve_process_drains_a_stream_on_sigterm(tmp_path: Path) -> None:
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
            "TARA_TELEMETRY__SQLITE_PATH": str(tmp_path / "interactions.db"),
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


def test_servers_freeze_the_start_up_heap_and_collect_on_their_own_schedule() -> None:
    # In a fresh interpreter: the collector's settings are process-wide.
    code = (
        "import gc; from tara.garbage import tune_gc"
        "; collector = tune_gc(0.05, 10**9)"
        "; assert not gc.isenabled()"
        "; assert gc.get_freeze_count() > 1000, gc.get_freeze_count()"
        "; import time; time.sleep(0.5); collector.stop()"
        "; assert collector.collections >= 3, collector.collections"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.integration
async def test_serve_process_collects_garbage_on_the_configured_interval(tmp_path: Path) -> None:
    # As an operator sees it: automatic collection is off, and full collections come
    # every TARA_SERVER__GC_INTERVAL seconds (python_gc_collections_total, generation 2).
    port = free_port()
    env = serve_env(
        TARA_SERVER__GC_INTERVAL="0.2",
        TARA_TELEMETRY__SQLITE_PATH=str(tmp_path / "interactions.db"),
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below
        [sys.executable, "-m", "tara", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    async def collections(client: httpx.AsyncClient) -> dict[str, float]:
        text = (await client.get(f"{base}/metrics")).text
        prefix = "python_gc_collections_total{generation="
        return {
            line[len(prefix) + 1]: float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(prefix)
        }

    try:
        async with httpx.AsyncClient(timeout=5) as client:
            await until_ready(proc, client, base)
            first = await collections(client)
            later: dict[str, float] = {}

            async def full_collections_ran() -> bool:
                later.update(await collections(client))
                return later["2"] >= first["2"] + 3

            await eventually(full_collections_ran, "three timed full collections", within=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.communicate, timeout=30)
    assert (later["0"], later["1"]) == (first["0"], first["1"])  # nothing automatic


def test_servers_fix_the_mmap_threshold_of_glibc() -> None:
    # In a fresh interpreter: the allocator's settings are process-wide. (The machines
    # the project runs on use glibc; elsewhere tune_malloc says it changed nothing.)
    code = "from tara.serving import tune_malloc; assert tune_malloc() is True"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
