"""One contract for every RoutingStore (memory and the real Redis), plus Redis specifics."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara import keys
from tara.rollout.routing import CanaryRoute, RoutingTable, Segment, TrackRoute
from tara.rollout.routing_store import RoutingStore, RoutingStoreError
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.serving import free_port


def table(version: int, weight_bp: int = 1000, model: str = "ft-1") -> RoutingTable:
    """A one-canary table; ``model`` lets concurrent writers tell their tables apart."""
    c = CanaryRoute("r1", Segment("math", "hi"), model, "salt-1", weight_bp)
    return RoutingTable(version, {"tara-tutor": TrackRoute("tara-stable", (c,))})


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> RoutingStore:
    # Sync on purpose: an async fixture cannot pull in the async redis_client lazily.
    if request.param == "memory":
        return MemoryRoutingStore()
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    return RedisRoutingStore(client, request.getfixturevalue("namespace"))


async def test_empty_store_has_no_table_and_version_zero(store: RoutingStore) -> None:
    assert await store.load_table() is None
    assert await store.load_version() == 0


async def test_first_save_expects_version_zero(store: RoutingStore) -> None:
    assert await store.save_table(table(1), expected_version=0)
    assert await store.load_table() == table(1)
    assert await store.load_version() == 1


async def test_versions_increment_one_save_at_a_time(store: RoutingStore) -> None:
    for version in range(1, 6):
        assert await store.save_table(table(version, weight_bp=version * 100), version - 1)
        assert await store.load_version() == version
        assert await store.load_table() == table(version, weight_bp=version * 100)


async def test_stale_or_future_expected_version_loses_and_changes_nothing(
    store: RoutingStore,
) -> None:
    assert await store.save_table(table(1), 0)
    assert await store.save_table(table(2, weight_bp=2500), 1)
    assert not await store.save_table(table(2, weight_bp=5000), 1)  # someone else took 2
    assert not await store.save_table(table(1, weight_bp=5000), 0)
    assert not await store.save_table(table(6, weight_bp=5000), 5)
    assert await store.load_version() == 2
    assert await store.load_table() == table(2, weight_bp=2500)


@pytest.mark.parametrize(("version", "expected"), [(1, 1), (3, 1), (0, 0), (1, -1)])
async def test_table_version_must_be_expected_plus_one(
    store: RoutingStore, version: int, expected: int
) -> None:
    with pytest.raises(ValueError, match="version"):
        await store.save_table(table(version), expected)
    assert await store.load_version() == 0


async def test_concurrent_savers_one_wins_each_version(store: RoutingStore) -> None:
    for version in range(1, 4):
        results = await asyncio.gather(
            *(store.save_table(table(version, model=f"w{i}"), version - 1) for i in range(8))
        )
        assert sum(results) == 1, results
        winner = results.index(True)
        assert await store.load_table() == table(version, model=f"w{winner}")
        assert await store.load_version() == version


async def test_tables_round_trip_exactly(store: RoutingStore) -> None:
    rich = RoutingTable(
        1,
        {
            "tara-tutor": TrackRoute(
                "tara-stable",
                (
                    CanaryRoute("r-hi", Segment("गणित", "hi"), "ft:hi", "सॉल्ट", 0),
                    CanaryRoute("r-ta", Segment(None, "ta"), "ft:ta", "s2", 10_000),
                    CanaryRoute("r-ph", Segment("physics"), "ft:ph", "s3", 2500),
                ),
            ),
            "tara-quiz": TrackRoute("quiz-stable"),
        },
    )
    assert await store.save_table(rich, 0)
    assert await store.load_table() == rich


async def test_a_saved_table_is_not_changed_by_its_callers_dict(store: RoutingStore) -> None:
    tracks = {"tara-tutor": TrackRoute("tara-stable")}
    assert await store.save_table(RoutingTable(1, tracks), 0)
    tracks["intruder"] = TrackRoute("x")
    loaded = await store.load_table()
    assert loaded is not None
    assert set(loaded.tracks) == {"tara-tutor"}


async def test_aclose_leaves_the_stored_table_alone(store: RoutingStore) -> None:
    assert await store.save_table(table(1), 0)
    await store.aclose()
    await store.aclose()
    # Closing the store never closes a client it was handed: the data is still there.
    assert await store.load_table() == table(1)


# Redis specifics: the key layout, malformed contents, an unreachable server.


@pytest.mark.redis
async def test_redis_keys_follow_tara_keys(redis_client: aioredis.Redis, namespace: str) -> None:
    store = RedisRoutingStore(redis_client, namespace)
    assert await store.save_table(table(1), 0)
    assert await redis_client.get(keys.key(namespace, keys.ROUTING_VERSION)) == b"1"
    raw = await redis_client.get(keys.key(namespace, keys.ROUTING_TABLE))
    assert raw is not None
    assert orjson.loads(raw) == table(1).to_dict()


@pytest.mark.redis
async def test_redis_namespaces_are_separate(redis_client: aioredis.Redis, namespace: str) -> None:
    assert await RedisRoutingStore(redis_client, namespace).save_table(table(1), 0)
    other = RedisRoutingStore(redis_client, f"{namespace}:other")
    assert await other.load_table() is None
    assert await other.save_table(table(1, model="other"), 0)


@pytest.mark.redis
@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[]", b'{"version": 1}', b'{"version": 1, "tracks": {"t": "x"}}'],
)
async def test_redis_malformed_table_is_a_store_error(
    redis_client: aioredis.Redis, namespace: str, raw: bytes
) -> None:
    store = RedisRoutingStore(redis_client, namespace)
    await redis_client.set(store.table_key, raw)
    with pytest.raises(RoutingStoreError, match="malformed"):
        await store.load_table()


@pytest.mark.redis
async def test_redis_malformed_version_is_a_store_error(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    store = RedisRoutingStore(redis_client, namespace)
    await redis_client.set(store.version_key, b"seven")
    with pytest.raises(RoutingStoreError, match="not an integer"):
        await store.load_version()


async def test_redis_unreachable_is_a_store_error() -> None:
    client = aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    store = RedisRoutingStore(client, "tara-test-nowhere")
    try:
        with pytest.raises(RoutingStoreError, match="cannot read"):
            await store.load_version()
        with pytest.raises(RoutingStoreError, match="cannot read"):
            await store.load_table()
        with pytest.raises(RoutingStoreError, match="cannot save"):
            await store.save_table(table(1), 0)
    finally:
        await client.aclose()
