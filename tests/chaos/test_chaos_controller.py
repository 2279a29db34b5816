"""The leading controller killed with SIGKILL mid-rollout: the standby finishes the job.

Two ``tara controller`` processes share a Redis namespace; the canary fails
most requests (before the first byte, so students get stable's answer). The
leader is killed the moment the rollout starts; the standby takes the lease
when it expires and rolls the canary back, once. Students never notice: the
gateway routes with its own copy of the routing table.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos_support import (
    Outcome,
    control,
    figures,
    gateway_env,
    running_gateway,
    sandbox,
    stored_rows,
    under_load,
)

from tara.serving import free_port
from tcp_relay import REDIS_URL
from waiting import eventually

pytestmark = [pytest.mark.redis, pytest.mark.integration]

ADMIN = {"Authorization": "Bearer sk-chaos-admin"}
CANDIDATE = "tara-candidate-bad"
STAGES = [{"percent": 50, "duration": 600, "min_requests": 50, "min_ratings": 0, "intensive": True}]


def shared(namespace: str) -> dict[str, Any]:
    """Settings the gateway and both controllers agree on."""
    return {
        "redis_url": REDIS_URL,
        "redis_namespace": namespace,
        "rollout": {
            "stages": STAGES,
            "tick_interval": "PT0.2S",
            "leader_ttl": "PT1.5S",
            "interval": "PT0.5S",
            "intensive_interval": "PT0.5S",
            "shutdown_timeout": 1.0,
        },
    }


class Controller:
    """A ``tara controller`` process with its probes on a free port."""

    def __init__(self, env: dict[str, str], tmp: Path, name: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.out = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tara", "controller"],
            env={**os.environ, **env, "TARA_ROLLOUT__CONTROLLER_PORT": str(self.port)},
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )

    async def readyz(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=2) as client:
            try:
                response = await client.get(f"{self.base}/readyz")
            except httpx.TransportError:
                return {}
        body: dict[str, Any] = response.json()
        return body

    async def metric(self, text: str) -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            return text in (await client.get(f"{self.base}/metrics")).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()


@pytest.mark.timeout(60)
async def test_leader_killed_mid_rollout_the_standby_rolls_back_once(
    tmp_path: Path, namespace: str, redis_client: object
) -> None:
    outcome = Outcome()
    controllers: list[Controller] = []
    async with sandbox() as upstream:
        # The canary fails four requests in five before its first byte.
        bad = {"errors": {"rate": 0.8, "kinds": {"server_error": 1}}}
        await control(upstream, CANDIDATE, bad)
        env = gateway_env(upstream, tmp_path, **shared(namespace))
        env["TARA_UPSTREAM__RETRY_ATTEMPTS"] = "2"
        try:
            async with running_gateway(env, tmp_path) as gw:
                leader = Controller(env, tmp_path, "leader")
                controllers.append(leader)
                await eventually(lambda: _leads(leader), "a leader", within=20)
                standby = Controller(env, tmp_path, "standby")
                controllers.append(standby)
                await eventually(lambda: _ready(standby), "a standby", within=20)
                async with under_load(gw.base, outcome), httpx.AsyncClient() as admin:
                    started = await admin.post(
                        f"{gw.base}/admin/rollouts",
                        json={"track": "tara-tutor", "candidate": CANDIDATE},
                        headers=ADMIN,
                    )
                    assert started.status_code == 201, started.text
                    leader.proc.send_signal(signal.SIGKILL)  # mid-rollout
                    killed = time.monotonic()
                    rollout = started.json()["id"]

                    async def rolled_back() -> bool:
                        got = await admin.get(f"{gw.base}/admin/rollouts/{rollout}", headers=ADMIN)
                        return bool(got.json()["phase"] == "rolled_back")

                    await eventually(rolled_back, "the standby's rollback", within=30)
                    took = time.monotonic() - killed
                    await asyncio.sleep(0.5)  # students go on after the rollback
                once = await standby.metric(
                    'tara_rollout_decisions_total{decision="rollback",track="tara-tutor"} 1.0'
                )
                fallbacks = await gw.total("tara_fallbacks_total")
        finally:
            for c in controllers:
                c.stop()
    rows = {ix.request_id for ix in await stored_rows(f"sqlite:///{tmp_path / 'log.db'}")}
    assert leader.proc.returncode == -signal.SIGKILL
    assert outcome.failed == []
    assert once, "the standby decided the rollback exactly once"
    assert set(outcome.answered) <= rows
    figures(
        "controller_kill9_mid_rollout",
        answered=len(outcome.answered),
        failed=len(outcome.failed),
        canary_fallbacks=fallbacks,
        kill_to_rollback_s=round(took, 2),
        rows_missing=len(set(outcome.answered) - rows),
    )


async def _leads(c: Controller) -> bool:
    body = await c.readyz()
    return bool(body.get("ready") and body.get("leader"))


async def _ready(c: Controller) -> bool:
    body = await c.readyz()
    return bool(body.get("ready")) and not body.get("leader")
