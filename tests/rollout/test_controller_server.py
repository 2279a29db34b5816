"""``tara controller``: probes and metrics over real HTTP, ``--once``, graceful stop, refusals."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tara.cli import main
from tara.rollout.config import RolloutSettings
from tara.rollout.controller_server import controller_command, run_controller
from tara.serving import free_port
from tara.settings import Settings
from tcp_relay import REDIS_URL, RedisProxy
from waiting import eventually


def settings(port: int, namespace: str) -> Settings:
    rollout = RolloutSettings(
        controller_port=port, tick_interval=timedelta(seconds=0.05), shutdown_timeout=1.0
    )
    # Probes and ticks only: the fine-tuning loop would read an interaction log here.
    return Settings(
        redis_url=REDIS_URL, redis_namespace=namespace, rollout=rollout, retrain={"enabled": False}
    )


@pytest.mark.redis
@pytest.mark.usefixtures("redis_client")  # deletes the namespace's keys afterwards
async def test_probes_and_metrics_then_a_graceful_stop(namespace: str) -> None:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_controller(settings(port, namespace), stop=stop, registry=CollectorRegistry())
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(200):
            try:
                ready = await client.get("/readyz")
            except httpx.ConnectError:
                await asyncio.sleep(0.02)
                continue
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.02)
        assert ready.status_code == 200
        assert ready.json()["leader"] is True
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        metrics = (await client.get("/metrics")).text
        assert 'tara_rollout_decisions_total{decision="rollback",track="tara-tutor"} 0.0' in metrics
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0


@pytest.mark.redis
@pytest.mark.usefixtures("redis_client")
def test_once_prints_what_the_tick_did(capsys: pytest.CaptureFixture[str], namespace: str) -> None:
    code = controller_command(argparse.Namespace(once=True), settings(free_port(), namespace))
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leader"] is True
    assert report["errors"] == 0


def test_redis_backend_needs_a_url() -> None:
    s = Settings(state_backend="redis")
    assert controller_command(argparse.Namespace(once=True), s) == 2


def test_memory_state_is_refused_with_what_to_configure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tara.toml"
    config.write_text('state_backend = "memory"\n', encoding="utf-8")
    assert main(["controller", "--once", "--config", str(config)]) == 2
    assert capsys.readouterr().out == ""  # not a single tick ran
    message = caplog.records[-1].getMessage()
    assert "tara controller cannot run on state in process memory" in message
    assert "set TARA_REDIS_URL" in message
    assert "tara demo" in message


def answers(client: httpx.AsyncClient, path: str, status: int) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`eventually`: ``path`` answers ``status``."""

    async def check() -> bool:
        try:
            return (await client.get(path)).status_code == status
        except httpx.TransportError:
            return False

    return check


@pytest.mark.redis
async def test_probes_say_what_they_mean_when_a_tick_hangs(
    redis_proxy: RedisProxy, namespace: str
) -> None:
    port = free_port()
    rollout = RolloutSettings(
        controller_port=port,
        tick_interval=timedelta(seconds=0.05),
        liveness_timeout=timedelta(seconds=1),
        shutdown_timeout=0.5,
    )
    config = Settings(redis_url=redis_proxy.url, redis_namespace=namespace, rollout=rollout)
    stop = asyncio.Event()
    task = asyncio.create_task(run_controller(config, stop=stop, registry=CollectorRegistry()))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
        await eventually(answers(client, "/readyz", 200), "ready", within=20)
        assert await answers(client, "/healthz", 200)()
        # Redis stops answering without closing anything: the running tick hangs.
        redis_proxy.freeze()
        await eventually(answers(client, "/readyz", 503), "not ready", within=20)
        await eventually(answers(client, "/healthz", 503), "not alive", within=20)
        redis_proxy.thaw()
        await eventually(answers(client, "/healthz", 200), "alive again", within=20)
        await eventually(answers(client, "/readyz", 200), "ready again", within=20)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0


@pytest.mark.redis
async def test_a_standby_that_reaches_the_stores_is_ready(namespace: str) -> None:
    rollout = RolloutSettings(
        controller_port=0, tick_interval=timedelta(seconds=0.05), shutdown_timeout=0.5
    )
    stop = asyncio.Event()
    tasks = []
    ports = [free_port(), free_port()]
    for port in ports:
        config = Settings(
            redis_url=REDIS_URL,
            redis_namespace=namespace,
            rollout=rollout.model_copy(update={"controller_port": port}),
        )
        tasks.append(
            asyncio.create_task(run_controller(config, stop=stop, registry=CollectorRegistry()))
        )
    async with httpx.AsyncClient(timeout=2) as client:
        for port in ports:
            await eventually(answers(client, f"http://127.0.0.1:{port}/readyz", 200), "ready")
        leaders = [
            (await client.get(f"http://127.0.0.1:{port}/readyz")).json()["leader"] for port in ports
        ]
    assert sorted(leaders) == [False, True]
    stop.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == [0, 0]
