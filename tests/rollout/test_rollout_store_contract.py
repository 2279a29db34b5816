"""One contract for every RolloutStore (memory and the real Redis), plus Redis specifics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara import keys
from tara.rollout.config import RolloutSettings
from tara.rollout.model import Phase, Rollout
from tara.rollout.plan import plan_from_settings
from tara.rollout.rollout_store import RolloutStore, RolloutStoreError, StaleLeaderError
from tara.rollout.rollout_store_memory import MemoryRolloutStore
from tara.rollout.rollout_store_redis import RedisRolloutStore, leader_token_key
from tara.rollout.routing import Segment
from tcp_relay import RedisProxy

PLAN = plan_from_settings(RolloutSettings())


def rollout(rollout_id: str = "ro-1", created_at: float = 100.0, **changes: object) -> Rollout:
    base = Rollout(
        id=rollout_id,
        track="tara-tutor",
        segment=Segment("math", "hi"),
        stable_model="tara-stable",
        candidate_model="ft-1",
        salt="salt-1",
        plan=PLAN,
        created_at=created_at,
        updated_at=created_at,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Harness:
    """A store plus a way to issue a newer leader token, as a lease acquisition would."""

    store: RolloutStore
    new_leader: Callable[[], Awaitable[int]]


class Counter:
    def __init__(self) -> None:
        self.token: int | None = None

    async def bump(self) -> int:
        self.token = (self.token or 0) + 1
        return self.token


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        counter = Counter()
        return Harness(MemoryRolloutStore(lambda: counter.token), counter.bump)
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    namespace: str = request.getfixturevalue("namespace")

    async def bump() -> int:
        return int(await client.incr(leader_token_key(namespace)))

    return Harness(RedisRolloutStore(client, namespace), bump)


async def test_empty_store(harness: Harness) -> None:
    assert await harness.store.get("ro-1") is None
    assert await harness.store.load("ro-1") is None
    assert await harness.store.list() == []


async def test_first_save_expects_revision_zero_and_round_trips(harness: Harness) -> None:
    store = harness.store
    r = rollout()
    assert await store.save(r, 0)
    assert await store.get("ro-1") == r
    stored = await store.load("ro-1")
    assert stored is not None
    assert stored.revision == 1
    assert stored.rollout == r


async def test_revisions_grow_one_save_at_a_time(harness: Harness) -> None:
    store = harness.store
    for revision in range(5):
        assert await store.save(rollout(stage_index=revision % 3), revision)
    stored = await store.load("ro-1")
    assert stored is not None
    assert (stored.revision, stored.rollout.stage_index) == (5, 1)


async def test_stale_or_future_revision_loses_and_changes_nothing(harness: Harness) -> None:
    store = harness.store
    assert await store.save(rollout(), 0)
    assert await store.save(rollout(phase=Phase.PROGRESSING), 1)
    assert not await store.save(rollout(phase=Phase.ABORTED), 1)  # someone else took 2
    assert not await store.save(rollout(phase=Phase.ABORTED), 0)  # "create" over an existing one
    assert not await store.save(rollout(phase=Phase.ABORTED), 7)
    assert not await store.save(rollout("ro-2"), 1)  # a missing record is at revision 0
    stored = await store.load("ro-1")
    assert stored is not None
    assert (stored.revision, stored.rollout.phase) == (2, Phase.PROGRESSING)
    assert await store.get("ro-2") is None


async def test_negative_expected_revision_is_a_caller_bug(harness: Harness) -> None:
    with pytest.raises(ValueError, match="expected_revision"):
        await harness.store.save(rollout(), -1)


async def test_records_are_independent_and_listed_oldest_first(harness: Harness) -> None:
    store = harness.store
    assert await store.save(rollout("ro-b", created_at=200), 0)
    assert await store.save(rollout("ro-c", created_at=100), 0)
    assert await store.save(rollout("ro-a", created_at=200), 0)
    assert [r.id for r in await store.list()] == ["ro-c", "ro-a", "ro-b"]
    assert await store.save(rollout("ro-a", created_at=200, stage_index=1), 1)
    stored_b = await store.load("ro-b")
    assert stored_b is not None
    assert stored_b.revision == 1


async def test_concurrent_writers_on_one_revision_exactly_one_wins(harness: Harness) -> None:
    store = harness.store
    assert await store.save(rollout(), 0)
    writers = [store.save(rollout(candidate_model=f"ft-{i}"), 1) for i in range(8)]
    results = await asyncio.gather(*writers)
    assert sum(results) == 1
    winner = results.index(True)
    stored = await store.load("ro-1")
    assert stored is not None
    assert (stored.revision, stored.rollout.candidate_model) == (2, f"ft-{winner}")


async def test_fenced_write_with_the_newest_token_is_accepted(harness: Harness) -> None:
    token = await harness.new_leader()
    assert await harness.store.save(rollout(), 0, fence=token)
    assert await harness.store.save(rollout(stage_index=1), 1, fence=token)


async def test_fenced_write_from_a_stale_leader_is_refused(harness: Harness) -> None:
    store = harness.store
    old = await harness.new_leader()
    assert await store.save(rollout(), 0, fence=old)
    new = await harness.new_leader()
    with pytest.raises(StaleLeaderError, match=f"{old}.*{new}"):
        await store.save(rollout(phase=Phase.ROLLED_BACK), 1, fence=old)
    stored = await store.load("ro-1")
    assert stored is not None
    assert (stored.revision, stored.rollout.phase) == (1, Phase.PENDING)
    # The new leader writes; an unfenced (operator) write is never refused.
    assert await store.save(rollout(phase=Phase.PROGRESSING), 1, fence=new)
    assert await store.save(rollout(phase=Phase.PAUSED), 2)


async def test_fence_is_checked_before_the_revision(harness: Harness) -> None:
    old = await harness.new_leader()
    await harness.new_leader()
    with pytest.raises(StaleLeaderError):
        await harness.store.save(rollout(), 5, fence=old)


async def test_fence_before_any_lease_is_accepted(harness: Harness) -> None:
    assert await harness.store.save(rollout(), 0, fence=0)


# -- Redis specifics -------------------------------------------------------


@pytest.mark.redis
async def test_redis_layout(redis_client: aioredis.Redis, namespace: str) -> None:
    store = RedisRolloutStore(redis_client, namespace)
    assert await store.save(rollout(), 0)
    assert store.records_key == keys.key(namespace, keys.ROLLOUTS)
    assert leader_token_key(namespace) == f"{namespace}:leader:token"
    assert await redis_client.hget(store.revisions_key, "ro-1") == b"1"
    raw = await redis_client.hget(store.records_key, "ro-1")
    assert raw is not None
    assert b'"candidate_model":"ft-1"' in raw


@pytest.mark.redis
async def test_redis_malformed_record_is_a_store_error(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    store = RedisRolloutStore(redis_client, namespace)
    await redis_client.hset(store.records_key, "ro-1", b'{"id": "ro-1"}')
    with pytest.raises(RolloutStoreError, match="malformed"):
        await store.get("ro-1")
    with pytest.raises(RolloutStoreError, match="malformed"):
        await store.list()
    await redis_client.hset(store.records_key, "ro-2", b"not json")
    with pytest.raises(RolloutStoreError, match="malformed"):
        await store.get("ro-2")


@pytest.mark.redis
async def test_redis_bad_revision_is_a_store_error(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    store = RedisRolloutStore(redis_client, namespace)
    assert await store.save(rollout(), 0)
    await redis_client.hset(store.revisions_key, "ro-1", b"x")
    with pytest.raises(RolloutStoreError, match="revision"):
        await store.load("ro-1")


@pytest.mark.redis
async def test_redis_unreachable_is_a_store_error(redis_proxy: RedisProxy, namespace: str) -> None:
    client = aioredis.Redis.from_url(
        redis_proxy.url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    store = RedisRolloutStore(client, namespace)
    try:
        assert await store.save(rollout(), 0)
        await redis_proxy.stop()
        for call in (store.get("ro-1"), store.list(), store.save(rollout(), 1)):
            with pytest.raises(RolloutStoreError, match="cannot"):
                await call
    finally:
        await redis_proxy.start()
        await client.delete(store.records_key, store.revisions_key)
        await client.aclose()
