"""User retries across replicas: the later of two asks is the retry, whoever flushes first.

Two production gateways share the real Redis and one PostgreSQL schema. Each
student asks a question on one replica and asks it again on the other a few
milliseconds later; one replica flushes its retry checks ten times as often
as the other, so the later ask often reaches Redis first. In every trial the
log must flag the second request, never the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from gateway_harness import AUTH, UPSTREAM_KEY, gateway_settings
from prometheus_client import CollectorRegistry

from tara.gateway.app import Gateway
from tara.gateway.server import gateway_from_settings
from tara.sandbox import running_sandbox
from tara.sandbox.config import default_config, zero_latency
from tara.telemetry.pipeline import Telemetry
from waiting import eventually

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.integration]

STUDENTS = 12
ROUNDS = 3


@contextlib.asynccontextmanager
async def replica(
    upstream: str, namespace: str, dsn: str, schema: str, flush: float
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    settings = gateway_settings(
        upstream,
        redis_url="redis://127.0.0.1:6379/0",
        redis_namespace=namespace,
        database_url=dsn,
        telemetry={"pg_schema": schema, "flush_interval": 0.05},
        stats={"flush_interval": flush, "user_retry_settle_seconds": 1.0},
    )
    gateway = gateway_from_settings(settings, registry=CollectorRegistry())
    async with gateway.lifespan():
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client


def telemetry_of(gateway: Gateway) -> Telemetry:
    return next(s for s in gateway.services if isinstance(s, Telemetry))


async def ask(client: httpx.AsyncClient, student: str, question: str) -> str:
    body = {"model": "tara-tutor", "messages": [{"role": "user", "content": question}]}
    headers = {**AUTH, "X-Tara-User": student, "X-Tara-Subject": "physics"}
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["x-tara-request-id"]


def retries_counted(*gateways: Gateway) -> float:
    total = 0.0
    for gateway in gateways:
        for metric in gateway.metrics.registry.collect():
            if metric.name == "tara_user_retries":
                total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def test_the_later_ask_is_the_retry_whichever_replica_sees_it(
    redis_client: aioredis.Redis, namespace: str, pg_schema: tuple[str, str]
) -> None:
    del redis_client  # cleans the namespace afterwards
    dsn, schema = pg_schema
    rng = random.Random(11)
    config = zero_latency(default_config()).model_copy(update={"api_keys": [UPSTREAM_KEY]})
    firsts: list[str] = []
    seconds: list[str] = []
    async with (
        running_sandbox(config, seed=2) as upstream,
        replica(upstream, namespace, dsn, schema, flush=0.5) as (slow_gw, slow),
        replica(upstream, namespace, dsn, schema, flush=0.05) as (fast_gw, fast),
    ):
        for round_ in range(ROUNDS):
            pairs: list[Any] = []
            for i in range(STUDENTS):
                student, question = f"student-{round_}-{i}", f"Why does ice float? ({round_})"
                one, two = (slow, fast) if rng.random() < 0.5 else (fast, slow)
                pairs.append(ask(one, student, question))
                pairs.append(ask(two, student, question))
            # Each student's two asks go out in order, a few milliseconds apart.
            for first, second in zip(pairs[::2], pairs[1::2], strict=True):
                firsts.append(await first)
                seconds.append(await second)
            await asyncio.sleep(0.6)  # spreads the rounds over the slow replica's flushes
        await eventually(
            lambda: retries_counted(slow_gw, fast_gw) >= STUDENTS * ROUNDS,
            "every repeated question to be detected",
        )
        for gateway in (slow_gw, fast_gw):
            await telemetry_of(gateway).flush()
        log = telemetry_of(slow_gw).log
        rows = {rid: await log.get(rid) for rid in firsts + seconds}
        counted = retries_counted(slow_gw, fast_gw)
    flagged_first = [rid for rid in firsts if rows[rid] is None or rows[rid].user_retry]
    missed_second = [rid for rid in seconds if rows[rid] is None or not rows[rid].user_retry]
    assert flagged_first == []
    assert missed_second == []
    assert counted == STUDENTS * ROUNDS
