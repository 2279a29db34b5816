"""Scale out: four ``tara serve`` processes and one ``tara controller`` on one Redis.

Every replica routes from its own copy of the routing table, polled from
Redis every ``routing_refresh_seconds``. An operator starts a rollout on one
replica; every replica must then serve the new routing version: report it
in ``/readyz`` and send a student in the canary's buckets to the candidate
model. How fast that happens is measured in ``bench/bench_replicas.py``
(never asserted here; the wait below only stops a broken test).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tara.rollout.bucketing import in_canary
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.sandbox import default_config, running_sandbox, zero_latency
from tara.serving import free_port
from tcp_relay import REDIS_URL
from waiting import eventually

pytestmark = [pytest.mark.redis, pytest.mark.integration]

REPLICAS = 4
TRACK = "tara-tutor"
STABLE = "tara-stable"
CANDIDATE = "tara-candidate-good"
CLIENT = {"Authorization": "Bearer sk-scale-client"}
ADMIN = {"Authorization": "Bearer sk-scale-admin"}


def environment(upstream: str, namespace: str, tmp: Path) -> dict[str, str]:
    """What every process of the deployment shares (each gateway adds its own log file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARA_")}
    return {
        **env,
        "TARA_UPSTREAM__BASE_URL": upstream,
        "TARA_UPSTREAM__API_KEY": "sk-scale-upstream",
        "TARA_AUTH__CLIENT_KEYS": json.dumps(["sk-scale-client"]),
        "TARA_AUTH__ADMIN_KEY": "sk-scale-admin",
        "TARA_TRACKS": json.dumps({TRACK: {"stable_model": STABLE}}),
        "TARA_REDIS_URL": REDIS_URL,
        "TARA_REDIS_NAMESPACE": namespace,
        "TARA_TELEMETRY__SPOOL_PATH": str(tmp / "spool.jsonl"),
        "TARA_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def processes(commands: list[tuple[list[str], dict[str, str]]], tmp: Path) -> Iterator[None]:
    """Run each ``(argv, env)`` as a process until the block ends (SIGTERM, then kill)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n, (argv, env) in enumerate(commands):
            out = tmp / f"process-{n}.log"
            with out.open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tara", *argv],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


async def readyz(client: httpx.AsyncClient, base: str) -> dict[str, Any]:
    """A process's readiness body, or ``{}`` while it does not answer 200."""
    with contextlib.suppress(httpx.TransportError):
        response = await client.get(f"{base}/readyz")
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
    return {}


@contextlib.asynccontextmanager
async def deployment(tmp: Path, namespace: str) -> AsyncIterator[list[str]]:
    """Sandbox, one controller and four gateways, all ready; yields the gateways' URLs."""
    async with running_sandbox(
        zero_latency(default_config()).model_copy(update={"api_keys": ["sk-scale-upstream"]})
    ) as upstream:
        env = environment(upstream, namespace, tmp)
        ports = [free_port() for _ in range(REPLICAS)]
        controller_port = free_port()
        commands = [
            (["controller"], {**env, "TARA_ROLLOUT__CONTROLLER_PORT": str(controller_port)})
        ]
        for port in ports:
            log = {"TARA_TELEMETRY__SQLITE_PATH": str(tmp / f"log-{port}.db")}
            commands.append((["serve", "--port", str(port)], {**env, **log}))
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        with processes(commands, tmp):
            async with httpx.AsyncClient(timeout=5) as client:

                async def all_ready() -> bool:
                    leader = await readyz(client, f"http://127.0.0.1:{controller_port}")
                    gateways = [await readyz(client, b) for b in bases]
                    return bool(leader.get("leader")) and all(gateways)

                await eventually(all_ready, "the controller to lead and 4 gateways", within=60)
            yield bases


async def served_model(client: httpx.AsyncClient, base: str, student: str) -> tuple[str, str]:
    """``(variant, model)`` a replica answers this student with."""
    response = await client.post(
        f"{base}/v1/chat/completions",
        json={"model": TRACK, "messages": [{"role": "user", "content": "7 x 8?"}]},
        headers={**CLIENT, "X-Tara-User": student},
    )
    assert response.status_code == 200, response.text
    return response.headers["x-tara-variant"], response.headers["x-tara-model"]


@pytest.mark.timeout(150)
async def test_every_replica_serves_a_new_routing_version(
    tmp_path: Path, namespace: str, redis_client: aioredis.Redis
) -> None:
    async with deployment(tmp_path, namespace) as bases, httpx.AsyncClient(timeout=10) as client:
        before = {(await readyz(client, b))["routing_table"]["version"] for b in bases}
        started = await client.post(
            f"{bases[0]}/admin/rollouts",
            json={"track": TRACK, "candidate": CANDIDATE},
            headers=ADMIN,
        )
        assert started.status_code == 201, started.text
        table = await RedisRoutingStore(redis_client, namespace).load_table()
        assert table is not None
        assert table.version not in before
        canary = table.tracks[TRACK].canaries[0]
        student = next(
            s
            for s in (f"student-{n}" for n in range(10_000))
            if in_canary(canary.salt, s, canary.weight_bp)
        )

        async def every_replica_switched() -> bool:
            versions = [(await readyz(client, b))["routing_table"]["version"] for b in bases]
            return versions == [table.version] * REPLICAS

        await eventually(every_replica_switched, "every replica on the new version", within=30)
        served = await asyncio.gather(*(served_model(client, b, student) for b in bases))
    assert served == [("canary", CANDIDATE)] * REPLICAS
