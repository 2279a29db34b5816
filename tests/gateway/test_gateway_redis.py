"""Routing tables shared through the real Redis: replicas follow changes, survive outages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from gateway_harness import AUTH, MESSAGES, canary_table, gateway_settings, in_process

from tara.gateway.app import Gateway
from tara.rollout.routing_store_redis import RedisRoutingStore

pytestmark = pytest.mark.redis

# No upstream and no fallback: every answer is a 502 whose headers still say where it was routed.
SETTINGS = gateway_settings(upstream={"retry_attempts": 1, "fallback_to_stable": False})


async def variant(client: httpx.AsyncClient, student: str = "s-1") -> str:
    body = {"model": "tara-tutor", "messages": MESSAGES}
    response = await client.post(
        "/v1/chat/completions", json=body, headers={**AUTH, "X-Tara-User": student}
    )
    return response.headers["x-tara-variant"]


async def wait_for(predicate_clients: list[httpx.AsyncClient], want: str, bound: float) -> None:
    """Poll until every client routes s-1 to ``want`` (fails after ``bound`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while True:
        seen = [await variant(c) for c in predicate_clients]
        if all(v == want for v in seen):
            return
        if loop.time() > deadline:
            pytest.fail(f"replicas still route to {seen} after {bound} s, want {want}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def replica(url: str, namespace: str) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    client = aioredis.Redis.from_url(url)
    try:
        async with in_process(SETTINGS, store=RedisRoutingStore(client, namespace)) as pair:
            yield pair
    finally:
        await client.aclose()


async def test_two_replicas_follow_a_weight_change(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    writer = RedisRoutingStore(redis_client, namespace)
    assert await writer.save_table(canary_table("tara-candidate-good", 0, version=1), 0)
    url = "redis://127.0.0.1:6379/0"
    async with replica(url, namespace) as (_a, one), replica(url, namespace) as (_b, two):
        assert [await variant(one), await variant(two)] == ["stable", "stable"]
        assert await writer.save_table(canary_table("tara-candidate-good", 10_000, version=2), 1)
        await wait_for([one, two], "canary", bound=2.0)
        assert await writer.save_table(canary_table("tara-candidate-good", 0, version=3), 2)
        await wait_for([one, two], "stable", bound=2.0)


async def test_replica_keeps_serving_when_redis_goes_away(
    redis_client: aioredis.Redis, namespace: str, redis_proxy: object
) -> None:
    from tcp_relay import RedisProxy

    assert isinstance(redis_proxy, RedisProxy)
    writer = RedisRoutingStore(redis_client, namespace)
    assert await writer.save_table(canary_table("tara-candidate-good", 10_000, version=1), 0)
    async with replica(redis_proxy.url, namespace) as (gateway, client):
        await wait_for([client], "canary", bound=2.0)
        await redis_proxy.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while gateway.cache.healthy:
            assert loop.time() < deadline, "the cache never noticed the outage"
            await asyncio.sleep(0.02)
        # The last table stays in service and the gateway stays ready.
        assert await variant(client) == "canary"
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["routing_table"]["fresh"] is False
        assert "tara_routing_table_healthy 0.0" in (await client.get("/metrics")).text
        await redis_proxy.start()
        deadline = loop.time() + 5.0
        while not gateway.cache.healthy:
            assert loop.time() < deadline, "the cache never recovered"
            await asyncio.sleep(0.02)
        assert "tara_routing_table_healthy 1.0" in (await client.get("/metrics")).text
