"""``tara controller``: probes and metrics over real HTTP, ``--once``, graceful stop."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tara.rollout.config import RolloutSettings
from tara.rollout.controller_server import controller_command, run_controller
from tara.serving import free_port
from tara.settings import Settings


def settings(port: int) -> Settings:
    rollout = RolloutSettings(
        controller_port=port, tick_interval=timedelta(seconds=0.05), shutdown_timeout=1.0
    )
    return Settings(state_backend="memory", rollout=rollout)


async def test_probes_and_metrics_then_a_graceful_stop() -> None:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_controller(settings(port), stop=stop, registry=CollectorRegistry())
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


def test_once_prints_what_the_tick_did(capsys: pytest.CaptureFixture[str]) -> None:
    code = controller_command(argparse.Namespace(once=True), settings(free_port()))
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["leader"] is True
    assert report["errors"] == 0


def test_redis_backend_needs_a_url() -> None:
    s = Settings(state_backend="redis")
    assert controller_command(argparse.Namespace(once=True), s) == 2
