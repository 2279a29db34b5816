"""RoutingCache against the real Redis: replicas converge, outages are survived and logged once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tara.rollout.routing import CanaryRoute, RoutingTable, Segment, TrackRoute
from tara.rollout.routing_cache import RoutingCache
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.serving import free_port
from tcp_relay import REDIS_URL, RedisProxy
from waiting import eventually

CONFIGURED = {"tara-tutor": "tara-stable", "tara-quiz": "quiz-stable"}
LOGGER = "tara.rollout.routing_cache"


def table(version: int, weight_bp: int = 1000) -> RoutingTable:
    c = CanaryRoute("r1", Segment("math"), "ft-1", "salt-1", weight_bp)
    return RoutingTable(version, {"tara-tutor": TrackRoute("tara-stable", (c,))})


def expected(version: int, weight_bp: int = 1000) -> RoutingTable:
    """What a cache serves for ``table(version)``: the configured quiz track merged in."""
    return table(version, weight_bp).with_defaults(CONFIGURED)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.fixture
def writer(redis_client: aioredis.Redis, namespace: str) -> RedisRoutingStore:
    """The controller's side: publishes tables straight to the real Redis."""
    return RedisRoutingStore(redis_client, namespace)


@pytest.fixture
async def proxied(redis_proxy: RedisProxy) -> AsyncIterator[aioredis.Redis]:
    """A client (redis-py defaults: retries with backoff) that reaches Redis via the proxy."""
    client = aioredis.Redis.from_url(redis_proxy.url)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never answers: a hung Redis."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in held:
            w.close()
        await server.wait_closed()


def test_configured_tracks_are_served_before_any_load() -> None:
    cache = RoutingCache(MemoryRoutingStore(), CONFIGURED)
    assert cache.table == RoutingTable().with_defaults(CONFIGURED)
    assert not cache.healthy
    assert cache.age_seconds() == math.inf
    assert cache.refresh_errors == 0


async def test_stored_tracks_win_over_configured_ones() -> None:
    store = MemoryRoutingStore()
    stored = RoutingTable(1, {"tara-tutor": TrackRoute("newer-stable"), "extra": TrackRoute("x")})
    assert await store.save_table(stored, 0)
    cache = RoutingCache(store, CONFIGURED)
    assert await cache.refresh_once()
    assert cache.table.tracks == {
        "tara-tutor": TrackRoute("newer-stable"),
        "extra": TrackRoute("x"),
        "tara-quiz": TrackRoute("quiz-stable"),
    }
    assert cache.healthy
    assert 0 <= cache.age_seconds() < math.inf


@pytest.mark.redis
async def test_two_replicas_see_a_change_after_refresh(
    redis_client: aioredis.Redis, namespace: str, writer: RedisRoutingStore
) -> None:
    other_client = aioredis.Redis.from_url(REDIS_URL)
    try:
        replicas = [
            RoutingCache(RedisRoutingStore(redis_client, namespace), CONFIGURED),
            RoutingCache(RedisRoutingStore(other_client, namespace), CONFIGURED),
        ]
        for cache in replicas:
            assert await cache.refresh_once()
            assert cache.table == RoutingTable().with_defaults(CONFIGURED)
        for version, weight in [(1, 1000), (2, 2500), (3, 0)]:
            assert await writer.save_table(table(version, weight), version - 1)
            for cache in replicas:
                assert await cache.refresh_once()
                assert cache.table == expected(version, weight)
                assert cache.healthy
    finally:
        await other_client.aclose()


@pytest.mark.redis
async def test_unchanged_version_skips_the_table_and_a_malformed_one_is_an_error(
    redis_client: aioredis.Redis, writer: RedisRoutingStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    cache = RoutingCache(writer, CONFIGURED)
    assert await writer.save_table(table(1), 0)
    assert await cache.refresh_once()
    served = cache.table

    # Same version: only the version key is read, so garbage in the table key goes unseen.
    await redis_client.set(writer.table_key, b"{garbage")
    assert await cache.refresh_once()
    assert cache.table is served

    # A new version whose table is malformed: an error, and the last good table stays.
    await redis_client.set(writer.version_key, b"2")
    assert not await cache.refresh_once()
    assert not await cache.refresh_once()
    assert cache.table is served
    assert not cache.healthy
    assert cache.refresh_errors == 2
    (warning,) = records(caplog, logging.WARNING)
    assert "malformed" in warning
    assert "last good table (version 1)" in warning

    assert await writer.save_table(table(3, 5000), 2)
    assert await cache.refresh_once()
    assert cache.table == expected(3, 5000)
    assert cache.healthy
    assert cache.refresh_errors == 2
    assert any("reachable again after 2 failed" in m for m in records(caplog, logging.INFO))


@pytest.mark.redis
async def test_store_that_lost_its_data_sends_everyone_to_stable(
    redis_client: aioredis.Redis, writer: RedisRoutingStore
) -> None:
    cache = RoutingCache(writer, CONFIGURED)
    assert await writer.save_table(table(1, 10_000), 0)
    assert await cache.refresh_once()
    await redis_client.delete(writer.table_key, writer.version_key)
    assert await cache.refresh_once()
    assert cache.table == RoutingTable().with_defaults(CONFIGURED)


@pytest.mark.redis
async def test_outage_keeps_the_last_table_logs_once_and_recovers(
    redis_proxy: RedisProxy,
    proxied: aioredis.Redis,
    namespace: str,
    writer: RedisRoutingStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    cache = RoutingCache(RedisRoutingStore(proxied, namespace), CONFIGURED, refresh_timeout=0.3)
    assert await writer.save_table(table(1), 0)
    assert await cache.refresh_once()

    await redis_proxy.stop()
    assert await writer.save_table(table(2, 2500), 1)  # the controller still reaches Redis
    for attempt in range(1, 4):
        assert not await cache.refresh_once()
        assert cache.refresh_errors == attempt
    assert cache.table == expected(1)
    assert not cache.healthy
    assert cache.age_seconds() > 0
    assert len(records(caplog, logging.WARNING)) == 1
    assert records(caplog, logging.INFO) == []

    await redis_proxy.start()
    await eventually(cache.refresh_once)
    assert cache.healthy
    assert cache.table == expected(2, 2500)
    assert len(records(caplog, logging.WARNING)) == 1
    assert len([m for m in records(caplog, logging.INFO) if "reachable again" in m]) == 1


@pytest.mark.parametrize("failure", ["refused", "silent"])
async def test_start_against_an_unreachable_store_returns_in_time_with_defaults(
    failure: str,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        port = (
            free_port()
            if failure == "refused"
            else await stack.enter_async_context(silent_server())
        )
        client = aioredis.Redis(port=port)  # redis-py defaults: 5 s socket timeout, 10 retries
        stack.push_async_callback(client.aclose)
        cache = RoutingCache(RedisRoutingStore(client, "tara-test-nowhere"), CONFIGURED)
        # 3 s is a generous bound on a 0.2 s wait; an unbounded start would hang for many seconds.
        await asyncio.wait_for(cache.start(initial_timeout=0.2), timeout=3)
        stack.push_async_callback(cache.stop)
        assert cache.table == RoutingTable().with_defaults(CONFIGURED)
        assert not cache.healthy
        assert cache.refresh_errors >= 1
        assert cache.age_seconds() == math.inf


@pytest.mark.redis
async def test_background_loop_picks_up_changes_and_recovers_by_itself(
    redis_proxy: RedisProxy, proxied: aioredis.Redis, namespace: str, writer: RedisRoutingStore
) -> None:
    store = RedisRoutingStore(proxied, namespace)
    cache = RoutingCache(store, CONFIGURED, interval=0.05, refresh_timeout=0.2)
    await cache.start()
    await cache.start()  # idempotent: still one polling task
    try:
        assert cache.healthy
        assert await writer.save_table(table(1), 0)
        await eventually(lambda: cache.table == expected(1))

        await redis_proxy.stop()
        await eventually(lambda: not cache.healthy)
        assert await writer.save_table(table(2, 5000), 1)
        await redis_proxy.start()
        await eventually(lambda: cache.healthy and cache.table == expected(2, 5000))
    finally:
        await cache.stop()
        await cache.stop()
    assert cache.table == expected(2, 5000)  # still readable after stop
