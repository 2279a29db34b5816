"""One contract for the loop's stores (memory and the real Redis): runs and the trigger ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara import keys
from tara.retrain.run import Run, RunState
from tara.retrain.stores import Ledger, LedgerStore, RunStore, StoreError
from tara.retrain.stores_memory import MemoryLedgerStore, MemoryRunStore
from tara.retrain.stores_redis import RedisLedgerStore, RedisRunStore
from tara.rollout.rollout_store import StaleLeaderError
from tara.rollout.rollout_store_redis import leader_token_key
from tara.rollout.routing import Segment
from tara.triggers.model import Scope
from tara.triggers.state import TriggerState


def run(run_id: str = "ft-1", created_at: float = 100.0, **changes: object) -> Run:
    base = Run(
        id=run_id,
        track="tara-tutor",
        segment=Segment("math", "hi"),
        created_at=created_at,
        data_since=10.0,
        data_until=created_at,
        triggers=({"trigger": "low_rating", "value": 2.8, "threshold": 3.5},),
        state_since=created_at,
        updated_at=created_at,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Harness:
    """Both stores over one backend, and a way to issue a newer leader token."""

    runs: RunStore
    ledger: LedgerStore
    new_leader: Callable[[], Awaitable[int]]


class Tokens:
    def __init__(self) -> None:
        self.token: int | None = None

    async def bump(self) -> int:
        self.token = (self.token or 0) + 1
        return self.token


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "memory":
        tokens = Tokens()
        token = lambda: tokens.token  # noqa: E731 - both stores read one board
        return Harness(MemoryRunStore(token), MemoryLedgerStore(token), tokens.bump)
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    namespace: str = request.getfixturevalue("namespace")

    async def bump() -> int:
        return int(await client.incr(leader_token_key(namespace)))

    return Harness(RedisRunStore(client, namespace), RedisLedgerStore(client, namespace), bump)


async def test_an_empty_store_has_no_runs_and_an_empty_ledger(harness: Harness) -> None:
    assert await harness.runs.get("ft-1") is None
    assert await harness.runs.load("ft-1") is None
    assert await harness.runs.list() == []
    stored = await harness.ledger.load()
    assert stored.revision == 0
    assert stored.ledger.checked_at is None
    assert stored.ledger.triggers.last_run(Scope(language="hi", subject="math")) is None


async def test_a_run_round_trips_with_every_field(harness: Harness) -> None:
    first = run()
    assert await harness.runs.save(first, 0)
    later = first.entered(
        RunState.PREPARED,
        120.0,
        "dataset written",
        {"examples": {"train": 80}},
        dataset_dir="/data/ft-1",
        dataset_hash="abc",
        examples={"train": 80, "validation": 10, "test": 10},
    )
    assert await harness.runs.save(later, 1)
    stored = await harness.runs.load("ft-1")
    assert stored is not None
    assert stored.revision == 2
    assert stored.run == later
    assert stored.run.steps[-1].state is RunState.PREPARED
    assert await harness.runs.get("ft-1") == later


async def test_check_and_set_lets_one_of_two_writers_win(harness: Harness) -> None:
    assert await harness.runs.save(run(), 0)
    approved = replace(run(), approved_by="sre", reason="approved")
    cancelled = replace(run(), cancel_requested_by="sre", reason="cancel")
    results = await asyncio.gather(harness.runs.save(approved, 1), harness.runs.save(cancelled, 1))
    assert sorted(results) == [False, True]
    stored = await harness.runs.get("ft-1")
    assert stored in (approved, cancelled)
    assert not await harness.runs.save(run(), 0)  # a second "create" of the same id loses


async def test_runs_are_listed_oldest_first(harness: Harness) -> None:
    for run_id, at in (("ft-b", 300.0), ("ft-a", 100.0), ("ft-c", 100.0)):
        assert await harness.runs.save(run(run_id, at), 0)
    assert [r.id for r in await harness.runs.list()] == ["ft-a", "ft-c", "ft-b"]


async def test_a_stale_leader_cannot_write_runs_or_the_ledger(harness: Harness) -> None:
    old = await harness.new_leader()
    assert await harness.runs.save(run(), 0, fence=old)
    new = await harness.new_leader()
    with pytest.raises(StaleLeaderError, match=f"token {old} is stale"):
        await harness.runs.save(run("ft-2"), 0, fence=old)
    with pytest.raises(StaleLeaderError):
        await harness.ledger.save(Ledger(checked_at=5.0), 0, fence=old)
    assert await harness.runs.get("ft-2") is None
    assert await harness.runs.save(run("ft-2"), 0, fence=new)
    assert await harness.ledger.save(Ledger(checked_at=5.0), 0, fence=new)
    assert await harness.runs.save(replace(run("ft-2"), reason="operator"), 1)  # unfenced


async def test_the_ledger_round_trips_and_is_check_and_set(harness: Harness) -> None:
    triggers = TriggerState()
    hi_math = Scope(language="hi", subject="math")
    triggers.record("low_rating", hi_math, 1000.0)
    decisions = [{"segment": "math:hi", "start": True, "reason": "low_rating fired"}]
    ledger = Ledger(triggers, checked_at=1000.0, decisions=decisions)
    assert await harness.ledger.save(ledger, 0)
    stored = await harness.ledger.load()
    assert stored.revision == 1
    assert stored.ledger.checked_at == 1000.0
    assert stored.ledger.triggers.last_run(hi_math) == 1000.0
    assert stored.ledger.triggers.last_run(hi_math, "low_rating") == 1000.0
    assert list(stored.ledger.decisions) == decisions
    assert not await harness.ledger.save(Ledger(checked_at=2.0), 0)
    assert (await harness.ledger.load()).ledger.checked_at == 1000.0


@pytest.mark.redis
async def test_redis_keys_are_namespaced_and_malformed_records_are_errors(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    runs = RedisRunStore(redis_client, namespace)
    ledger = RedisLedgerStore(redis_client, namespace)
    assert await runs.save(run(), 0)
    assert await ledger.save(Ledger(checked_at=1.0), 0)
    found = {k.decode() async for k in redis_client.scan_iter(match=f"{namespace}:*")}
    assert found == {
        keys.key(namespace, keys.RUNS),
        keys.key(namespace, keys.RUNS, "revision"),
        keys.key(namespace, keys.TRIGGERS),
        keys.key(namespace, keys.TRIGGERS, "revision"),
    }
    await redis_client.hset(keys.key(namespace, keys.RUNS), "ft-bad", b'{"id": "ft-bad"}')
    with pytest.raises(StoreError, match="malformed"):
        await runs.list()
    await redis_client.hset(keys.key(namespace, keys.TRIGGERS), "ledger", b"[]")
    with pytest.raises(StoreError, match="malformed"):
        await ledger.load()


async def test_an_unreachable_redis_is_a_store_error() -> None:
    client = aioredis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(StoreError, match="cannot"):
            await RedisRunStore(client, "nowhere").list()
        with pytest.raises(StoreError, match="cannot"):
            await RedisLedgerStore(client, "nowhere").load()
        with pytest.raises(StoreError, match="cannot"):
            await RedisRunStore(client, "nowhere").save(run(), 0)
    finally:
        await client.aclose()
