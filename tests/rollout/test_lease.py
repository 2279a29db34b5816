"""The leader lease against the real Redis (and in memory): one leader, growing fencing tokens."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara.rollout.config import RolloutSettings
from tara.rollout.lease import MemoryLease, MemoryLeaseBoard
from tara.rollout.lease_redis import RedisLease
from tara.rollout.model import Rollout
from tara.rollout.plan import plan_from_settings
from tara.rollout.rollout_store import StaleLeaderError
from tara.rollout.rollout_store_memory import MemoryRolloutStore
from tara.rollout.rollout_store_redis import RedisRolloutStore, leader_token_key
from tara.rollout.routing import Segment
from tcp_relay import RedisProxy
from waiting import eventually

pytestmark = pytest.mark.redis


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def expired(client: aioredis.Redis, lease: RedisLease) -> bool:
    """Whether Redis has dropped ``lease``'s lock (its TTL ran out)."""
    return not await client.exists(lease.owner_key)


def a_rollout() -> Rollout:
    plan = plan_from_settings(RolloutSettings())
    return Rollout("ro-1", "tara-tutor", Segment(), "tara-stable", "ft-1", "salt", plan)


async def test_one_leader_at_a_time_and_tokens_grow(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    a = RedisLease(redis_client, namespace, ttl=5.0)
    b = RedisLease(redis_client, namespace, ttl=5.0)
    assert await a.acquire()
    assert a.token == 1
    assert not await b.acquire()
    assert b.token is None
    assert await a.acquire()  # a renewal keeps the tenure
    assert a.token == 1
    await a.release()
    assert a.token is None
    assert await b.acquire()
    assert b.token == 2
    assert not await a.acquire()
    assert int(await redis_client.get(leader_token_key(namespace))) == 2
    assert await b.current_token() == 2


async def test_an_expired_lease_passes_to_another_and_the_old_one_cannot_renew(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    a = RedisLease(redis_client, namespace, ttl=0.2)
    b = RedisLease(redis_client, namespace, ttl=5.0)
    assert await a.acquire()
    await eventually(lambda: expired(redis_client, a), "the lease to expire in Redis")
    assert a.token is None  # its own clock says the lease ran out, too
    assert await b.acquire()
    assert b.token == 2
    assert not await a.acquire()
    await a.release()  # a stale release must not free the new leader's lock
    assert not await a.acquire()
    assert await b.acquire()
    assert b.token == 2


async def test_local_validity_ends_before_the_server_ttl(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    clock = Clock()
    lease = RedisLease(redis_client, namespace, ttl=10.0, clock=clock)
    assert await lease.acquire()
    clock.now += 7.9
    assert lease.token == 1
    clock.now += 0.2  # past ttl * (1 - SAFETY): stop trusting it before Redis drops it
    assert lease.token is None
    assert await lease.acquire()
    assert lease.token == 1


async def test_redis_outage_means_not_leading(
    redis_proxy: RedisProxy, redis_client: aioredis.Redis, namespace: str
) -> None:
    # redis_client only cleans the namespace up afterwards.
    client = aioredis.Redis.from_url(redis_proxy.url, retry=Retry(NoBackoff(), 0))
    try:
        lease = RedisLease(client, namespace, ttl=5.0)
        assert await lease.acquire()
        await redis_proxy.stop()
        assert not await lease.acquire()
        assert lease.token is None
        await lease.release()  # nothing held any more: no error either
    finally:
        await client.aclose()


async def test_a_stale_token_is_refused_by_the_redis_rollout_store(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    store = RedisRolloutStore(redis_client, namespace)
    old = RedisLease(redis_client, namespace, ttl=0.2)
    assert await old.acquire()
    stale = old.token
    assert stale == 1
    assert await store.save(a_rollout(), 0, fence=stale)
    await eventually(lambda: expired(redis_client, old), "the lease to expire in Redis")
    new = RedisLease(redis_client, namespace, ttl=5.0)
    assert await new.acquire()
    with pytest.raises(StaleLeaderError):
        await store.save(a_rollout(), 1, fence=stale)
    assert await store.save(a_rollout(), 1, fence=new.token)


def test_ttl_must_be_positive(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="positive"):
        RedisLease(redis_client, "ns", ttl=0)
    with pytest.raises(ValueError, match="positive"):
        MemoryLease(ttl=-1)


async def test_memory_leases_share_a_board() -> None:
    clock = Clock()
    board = MemoryLeaseBoard()
    a = MemoryLease(10.0, board=board, clock=clock)
    b = MemoryLease(10.0, board=board, clock=clock)
    assert await a.acquire()
    assert a.token == 1
    assert not await b.acquire()
    clock.now += 9
    assert await a.acquire()  # renewed until 1019
    clock.now += 9
    assert not await b.acquire()
    clock.now += 2
    assert a.token is None
    assert await b.acquire()
    assert b.token == 2
    assert not await a.acquire()
    await a.release()  # not the holder: changes nothing
    assert board.owner == b.owner
    await b.release()
    assert await a.acquire()
    assert a.token == 3


async def test_the_memory_store_fences_with_the_board() -> None:
    clock = Clock()
    board = MemoryLeaseBoard()
    store = MemoryRolloutStore(leader_token=lambda: board.token)
    a = MemoryLease(1.0, board=board, clock=clock)
    assert await a.acquire()
    assert await store.save(a_rollout(), 0, fence=a.token)
    clock.now += 2
    b = MemoryLease(1.0, board=board, clock=clock)
    assert await b.acquire()
    with pytest.raises(StaleLeaderError):
        await store.save(a_rollout(), 1, fence=1)
