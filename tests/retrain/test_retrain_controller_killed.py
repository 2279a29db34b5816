"""A ``tara controller`` killed with SIGKILL while its run trains: the next one resumes, one job.

Real processes: two ``tara controller`` processes one after the other on
the real Redis (a private namespace), ``tara sandbox`` as the fine-tuning
API, a gateway writing the interaction log the controllers read. The first
controller's run is past ``uploaded`` and its job is training in the sandbox
when the process is killed without a chance to say goodbye (its lease is
not released). The second takes the lease once it expires, finds the run in
``training`` in Redis and follows the *same* job: the sandbox, asked for the
jobs carrying the run's id, lists exactly one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from loop_harness import Students, asking, gateway_client, loop_settings, sandbox_config
from prometheus_client import CollectorRegistry

from tara.gateway.server import gateway_from_settings
from tara.retrain.run import Run, RunState
from tara.retrain.stores_redis import RedisRunStore
from tara.rollout.config import RolloutSettings
from tara.sandbox.config import FineTuningConfig
from tara.sandbox.server import running_sandbox
from tara.serving import free_port, running_server
from tara.settings import Settings
from tcp_relay import REDIS_URL
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def controller_config(settings: Settings, path: Path) -> Path:
    """The settings as a config file for a ``tara controller`` process (JSON is YAML)."""
    data = settings.model_dump(mode="json", exclude_defaults=True)
    data["rollout"]["controller_port"] = free_port()
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def controller(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A ``tara controller`` process; killed at the end if still running."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tara",
            "controller",
            "--config",
            str(config),
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_controller_killed_while_its_run_trains_is_resumed_without_a_second_job(
    tmp_path: Path, redis_client: aioredis.Redis, namespace: str
) -> None:
    tuning = FineTuningConfig(training_seconds=4.0, max_quality_gain=0.2, half_gain_examples=5)
    async with running_sandbox(sandbox_config(tuning), seed=3) as upstream:
        base = loop_settings(tmp_path, upstream)
        settings = base.model_copy(
            update={
                "state_backend": "redis",
                "redis_url": REDIS_URL,
                "redis_namespace": namespace,
                "rollout": RolloutSettings(
                    tick_interval=timedelta(seconds=0.1),
                    leader_ttl=timedelta(seconds=1),
                    shutdown_timeout=1.0,
                ),
                "retrain": base.retrain.model_copy(update={"min_training_examples": 30}),
            }
        )
        runs = RedisRunStore(redis_client, namespace)
        gateway = gateway_from_settings(settings, CollectorRegistry())
        async with (
            running_server(gateway) as gateway_url,
            gateway_client(gateway_url) as client,
            asking(Students(client), workers=4),
        ):
            config = controller_config(settings, tmp_path / "controller.yaml")
            async with controller(config, tmp_path / "first.log") as first:

                async def training() -> Run | None:
                    listed = await runs.list()
                    return next((r for r in listed if r.state is RunState.TRAINING), None)

                await eventually(training, "a run in training", within=60)
                run = await training()
                assert run is not None
                assert run.job_id is not None
                first.send_signal(signal.SIGKILL)
                assert await first.wait() == -signal.SIGKILL
            jobs = f"{upstream}/fine_tuning/jobs"
            headers = {"Authorization": "Bearer sk-sandbox"}
            async with httpx.AsyncClient(headers=headers) as sandbox:
                job = (await sandbox.get(f"{jobs}/{run.job_id}")).json()
                assert job["status"] in ("validating_files", "queued", "running")  # mid-training

                config = controller_config(settings, tmp_path / "controller.yaml")
                async with controller(config, tmp_path / "second.log") as second:

                    async def trained() -> bool:
                        stored = await runs.get(run.id)
                        return stored is not None and stored.state not in (
                            RunState.TRAINING,
                            RunState.UPLOADED,
                        )

                    await eventually(trained, "the run to finish training", within=60)
                    second.send_signal(signal.SIGTERM)
                    assert await second.wait() == 0
                listed = await sandbox.get(jobs, params={"metadata[tara_run]": run.id})
        after = await runs.get(run.id)
    assert after is not None
    assert [j["id"] for j in listed.json()["data"]] == [run.job_id]
    assert after.job_id == run.job_id
    assert after.fine_tuned_model is not None
    states = [s.state for s in after.steps]
    assert states[:5] == [
        RunState.PENDING,
        RunState.PREPARED,
        RunState.UPLOADED,
        RunState.TRAINING,
        RunState.TRAINED,
    ]
    assert len(states) == len(set(states))  # no step was done twice
