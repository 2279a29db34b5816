"""One contract for every WindowStore (memory and real Redis), plus the pure bucket plan."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_store import Series, WindowKey, WindowLayout, WindowStore, bucket_start
from tara.telemetry.window_store_memory import MemoryWindowStore
from tara.telemetry.window_store_redis import RedisWindowStore, bucket_key

StoreFactory = Callable[[TelemetryStatsSettings], WindowStore]
HOUR = 3600
STABLE = Series("tara-tutor", "all", "stable")
CANARY = Series("tara-tutor", "all", "canary")


def at(series: Series, start: int) -> WindowKey:
    return WindowKey(*series, start)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "memory":
        return lambda settings: MemoryWindowStore(settings)
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    namespace: str = request.getfixturevalue("namespace")
    return lambda settings: RedisWindowStore(client, namespace=namespace, settings=settings)


@pytest.fixture
def store(make_store: StoreFactory) -> WindowStore:
    return make_store(TelemetryStatsSettings())


@pytest.fixture
def hour() -> int:
    """Start of the last whole hour: recent enough for fine buckets to be alive."""
    return bucket_start(time.time(), HOUR) - HOUR


async def test_read_counts_buckets_overlapping_the_half_open_range(
    store: WindowStore, hour: int
) -> None:
    await store.add(
        {
            at(STABLE, hour): {"req": 1, "lat_sum": 0.25},
            at(STABLE, hour + 10): {"req": 2, "lat_sum": 0.5},
            at(STABLE, hour + 20): {"req": 4, "lat_sum": 1.0},
        }
    )
    both_first = await store.read(*STABLE, hour, hour + 20)
    assert both_first.requests == 3
    assert both_first.latency_sum == pytest.approx(0.75)
    assert (await store.read(*STABLE, hour + 10, hour + 30)).requests == 6
    # The bucket holding t0 counts: a stage that began mid-bucket sees its first requests.
    assert (await store.read(*STABLE, hour + 5, hour + 20)).requests == 3
    assert (await store.read(*STABLE, hour + 5, hour + 20.5)).requests == 7
    assert (await store.read(*STABLE, hour + 10, hour + 10)).requests == 0


async def test_series_stay_apart_and_read_many_reads_each(store: WindowStore, hour: int) -> None:
    await store.add({at(STABLE, hour): {"req": 5, "err:timeout": 1}, at(CANARY, hour): {"req": 2}})
    got = await store.read_many([STABLE, CANARY, Series("other", "all", "stable")], hour, hour + 10)
    assert got[STABLE].requests == 5
    assert got[STABLE].errors == {"timeout": 1}
    assert got[CANARY].requests == 2
    assert got[CANARY].error_count == 0
    assert got[Series("other", "all", "stable")].requests == 0
    assert await store.read_many([], hour, hour + 10) == {}


async def test_adds_accumulate_including_negative_and_fractional_deltas(
    store: WindowStore, hour: int
) -> None:
    key = at(CANARY, hour + 30)
    await store.add({key: {"req": 1, "rat:3": 1, "rel_sum": 0.4, "rel_n": 1}})
    await store.add({key: {"rat:3": -1, "rat:5": 1, "rel_sum": 0.5, "rel_n": 1, "tag:wrong": 1}})
    stats = await store.read(*CANARY, hour, hour + HOUR)
    assert stats.ratings == [0, 0, 0, 0, 1]
    assert stats.relevance_mean == pytest.approx(0.45)
    assert stats.tags == {"wrong": 1}
    await store.add({})  # an empty flush is a no-op
    assert (await store.read(*CANARY, hour, hour + HOUR)).requests == 1


async def test_long_reads_combine_rollups_with_fine_edges(store: WindowStore, hour: int) -> None:
    before = hour - HOUR
    await store.add(
        {
            at(STABLE, before + 50): {"req": 1},
            at(STABLE, before + 3590): {"req": 10},
            at(STABLE, hour): {"req": 100},
            at(STABLE, hour + 3590): {"req": 1000},
            at(STABLE, hour + HOUR + 100): {"req": 10_000},
        }
    )
    # [before+60, hour+HOUR+110): drops the bucket at before+50 only.
    assert (await store.read(*STABLE, before + 60, hour + HOUR + 110)).requests == 11_110
    assert (await store.read(*STABLE, before + 50, hour + HOUR + 100)).requests == 1_111
    assert (await store.read(*STABLE, hour, hour + HOUR)).requests == 1_100


async def test_expired_fine_edges_are_read_at_rollup_resolution(make_store: StoreFactory) -> None:
    store = make_store(TelemetryStatsSettings(fine_retention_seconds=HOUR))
    old = bucket_start(time.time(), HOUR) - 5 * HOUR
    await store.add({at(STABLE, old + 100): {"req": 1}, at(STABLE, old + 2000): {"req": 2}})
    # The rollup starting at `old` counts iff its start is in range.
    assert (await store.read(*STABLE, old + 1000, old + HOUR)).requests == 0
    assert (await store.read(*STABLE, old, old + 1800)).requests == 3
    assert (await store.read(*STABLE, old - 10, old + 2 * HOUR)).requests == 3


async def test_writes_older_than_retention_are_dropped(make_store: StoreFactory) -> None:
    store = make_store(TelemetryStatsSettings(fine_retention_seconds=60, retention_seconds=HOUR))
    old = bucket_start(time.time(), HOUR) - 3 * HOUR
    await store.add({at(STABLE, old): {"req": 1}})
    assert (await store.read(*STABLE, old - HOUR, time.time())).requests == 0


async def test_single_tier_layout_without_rollups(make_store: StoreFactory, hour: int) -> None:
    store = make_store(TelemetryStatsSettings(bucket_seconds=60, rollup_seconds=60))
    await store.add({at(STABLE, hour): {"req": 1}, at(STABLE, hour + 3000): {"req": 2}})
    assert (await store.read(*STABLE, hour, hour + HOUR)).requests == 3
    assert (await store.read(*STABLE, hour + 60, hour + HOUR)).requests == 2


@pytest.mark.redis
async def test_redis_buckets_live_under_the_namespace_and_expire(
    redis_client: aioredis.Redis, namespace: str, hour: int
) -> None:
    store = RedisWindowStore(redis_client, namespace=namespace)
    await store.add({at(CANARY, hour + 10): {"req": 1}})
    fine = bucket_key(namespace, "f", CANARY, hour + 10)
    rollup = bucket_key(namespace, "r", CANARY, hour)
    assert fine == f"{namespace}:win:tara-tutor:all:canary:{hour + 10}"
    assert await redis_client.hgetall(fine) == {b"req": b"1"}
    assert await redis_client.hgetall(rollup) == {b"req": b"1"}
    fine_ttl = await redis_client.ttl(fine)
    assert 0 < fine_ttl <= 2 * 86_400 + 20
    assert 2 * 86_400 < await redis_client.ttl(rollup) <= 15 * 86_400 + HOUR + 1
    await store.aclose()


@pytest.mark.parametrize(
    ("t0", "t1", "expected"),
    [
        (0, 30, [("f", 0), ("f", 10), ("f", 20)]),
        (0, 60, [("r", 0)]),
        (5, 15, [("f", 0), ("f", 10)]),
        (10, 130, [*(("f", s) for s in range(10, 60, 10)), ("r", 60), ("f", 120)]),
        (0, 121, [("r", 0), ("r", 60), ("f", 120)]),
        (30, 30, []),
    ],
)
def test_plan_reads_whole_rollups_and_fine_edges(
    t0: float, t1: float, expected: list[tuple[str, int]]
) -> None:
    layout = WindowLayout(bucket_seconds=10, rollup_seconds=60, fine_retention=1e6, retention=1e7)
    assert layout.plan(t0, t1, now=200) == expected


def test_plan_falls_back_to_rollups_where_fine_buckets_expired() -> None:
    layout = WindowLayout(bucket_seconds=10, rollup_seconds=60, fine_retention=200, retention=1e7)
    now = 10_000
    assert layout.plan(10, 130, now) == [("r", 60), ("r", 120)]
    assert layout.plan(now - 60, now, now) == [*(("f", s) for s in range(now - 60, now, 10))]


def test_targets_skip_buckets_that_would_already_be_expired() -> None:
    layout = WindowLayout(bucket_seconds=10, rollup_seconds=60, fine_retention=100, retention=1000)
    assert layout.targets(0, now=50) == [("f", 0, 110), ("r", 0, 1060)]
    assert layout.targets(0, now=500) == [("r", 0, 1060)]
    assert layout.targets(0, now=2000) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"bucket_seconds": 10, "rollup_seconds": 25},
        {"fine_retention_seconds": 100, "retention_seconds": 50},
    ],
)
def test_inconsistent_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        TelemetryStatsSettings.model_validate(bad)


async def test_memory_store_forgets_expired_buckets() -> None:
    now = [float(bucket_start(time.time(), HOUR))]
    settings = TelemetryStatsSettings(fine_retention_seconds=60, retention_seconds=HOUR)
    store = MemoryWindowStore(settings, clock=lambda: now[0])
    start = int(now[0])
    await store.add({at(STABLE, start): {"req": 1}})
    now[0] += 2 * HOUR + 61
    await store.add({at(STABLE, int(now[0])): {"req": 2}})  # sweeps the expired ones
    assert (await store.read(*STABLE, start, now[0] + 10)).requests == 2


async def test_a_poison_delta_is_refused_whole(store: WindowStore, hour: int) -> None:
    good = at(STABLE, hour)
    with pytest.raises(ValueError, match="lat_sum"):
        await store.add({good: {"req": 1}, at(CANARY, hour): {"lat_sum": math.nan}})
    with pytest.raises(ValueError, match="req"):
        await store.add({good: {"req": 1}, at(CANARY, hour + 10): {"req": math.inf}})
    assert (await store.read(*STABLE, hour, hour + 10)).requests == 0
    await store.ping()  # a refused delta is not an outage
    await store.add({good: {"req": 1}})
    assert (await store.read(*STABLE, hour, hour + 10)).requests == 1


@pytest.mark.redis
async def test_redis_refuses_a_name_it_cannot_encode_and_applies_nothing(
    redis_client: aioredis.Redis, namespace: str, hour: int
) -> None:
    store = RedisWindowStore(redis_client, namespace=namespace)
    poison = WindowKey("tara-tutor", "\udcff", "canary", hour)
    with pytest.raises(UnicodeEncodeError):
        await store.add({at(STABLE, hour): {"req": 1}, poison: {"req": 1}})
    assert (await store.read(*STABLE, hour, hour + 10)).requests == 0


async def test_a_read_early_in_a_stage_counts_the_partial_first_bucket(
    store: WindowStore, hour: int
) -> None:
    # The stage began 3 s into a bucket; a request 2 s later lands in that bucket.
    began = hour + 3
    await store.add({at(CANARY, hour): {"req": 1}, at(CANARY, hour + 10): {"req": 2}})
    assert (await store.read(*CANARY, began, began + 5)).requests == 1
    assert (await store.read(*CANARY, began, hour + 20)).requests == 3


async def test_a_replaced_tag_in_two_flushes_reads_as_no_tag(store: WindowStore, hour: int) -> None:
    # The first rating and its replacement reached the store in different flushes.
    await store.add({at(CANARY, hour): {"req": 1, "rat:2": 1, "tag:wrong": 1}})
    await store.add({at(CANARY, hour): {"rat:2": -1, "rat:5": 1, "tag:wrong": -1}})
    stats = await store.read(*CANARY, hour, hour + 10)
    assert (stats.ratings, stats.tags, stats.errors) == ([0, 0, 0, 0, 1], {}, {})
