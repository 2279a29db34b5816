"""Request index: one contract for memory and Redis, cross-replica feedback joins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara import keys
from tara.telemetry.interactions import Interaction
from tara.telemetry.request_index import (
    CountedFeedback,
    IndexedRequest,
    IndexUnavailableError,
    MemoryRequestIndex,
    RequestIndex,
)
from tara.telemetry.request_index_redis import (
    PUBLISH_CHUNK,
    RedisRequestIndex,
    held_entry,
    held_form,
    interaction_row,
)
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_recorder import WindowRecorder
from tara.telemetry.window_store import bucket_start
from tara.telemetry.window_store_redis import RedisWindowStore

NOW = bucket_start(time.time(), 3600) - 3600 + 120
FAST = TelemetryStatsSettings(index_lookup_wait=0)
PATIENT = TelemetryStatsSettings(index_lookup_wait=30)
"""Long enough never to expire in a test; the test releases the wait itself."""

IndexFactory = Callable[[TelemetryStatsSettings], RequestIndex]


def make_ix(request_id: str = "r1", **changes: Any) -> Interaction:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "created_at": NOW + 3.25,
        "track": "tara-tutor",
        "segment": "math:*",
        "variant": "canary",
        "model": "ft-1",
        "student_hash": "s1",
        "subject": "math",
        "language": "ta",
        "grade": "9",
        "status": 200,
    }
    fields.update(changes)
    return Interaction(**fields)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_index(request: pytest.FixtureRequest) -> IndexFactory:
    if request.param == "memory":
        return lambda settings: MemoryRequestIndex(settings)
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    namespace: str = request.getfixturevalue("namespace")
    return lambda settings: RedisRequestIndex(client, namespace=namespace, settings=settings)


async def test_recorded_requests_can_be_looked_up(make_index: IndexFactory) -> None:
    index = make_index(FAST)
    index.record(make_ix("r1"))
    index.record(make_ix("r2", subject=None, language=None, student_hash=None, variant="stable"))
    await index.flush()
    r1 = await index.lookup("r1")
    assert r1 == IndexedRequest(
        "r1", NOW + 3.25, "tara-tutor", "math:*", "canary", "ft-1", "math", "ta", "s1"
    )
    assert r1.window_key(10) == ("tara-tutor", "math:*", "canary", NOW)
    r2 = await index.lookup("r2")
    assert r2 is not None
    assert (r2.variant, r2.subject, r2.student_hash) == ("stable", None, None)
    assert await index.lookup("nope") is None
    await index.aclose()


async def test_feedback_replaces_and_reports_the_previous(make_index: IndexFactory) -> None:
    index = make_index(FAST)
    index.record(make_ix())
    await index.flush()
    first = await index.set_feedback("r1", CountedFeedback(2, ("wrong",), 0.5))
    assert first is not None
    assert first.previous is None
    assert first.request.variant == "canary"
    second = await index.set_feedback("r1", CountedFeedback(5))
    assert second is not None
    assert second.previous == CountedFeedback(2, ("wrong",), 0.5)
    assert await index.set_feedback("nope", CountedFeedback(1)) is None


async def test_requests_older_than_retention_are_unknown(make_index: IndexFactory) -> None:
    index = make_index(FAST)
    index.record(make_ix("old", created_at=time.time() - 31 * 86_400))
    await index.flush()
    assert await index.lookup("old") is None
    assert await index.set_feedback("old", CountedFeedback(3)) is None


async def test_memory_index_keeps_the_most_recent_ids() -> None:
    index = MemoryRequestIndex(TelemetryStatsSettings(index_cache_size=2))
    for rid in ("a", "b", "c"):
        index.record(make_ix(rid))
    assert await index.lookup("a") is None
    assert await index.lookup("c") is not None
    await index.set_feedback("c", CountedFeedback(4))
    index.record(make_ix("c"))  # recorded again: the feedback given stays
    entry = await index.lookup("c")
    assert entry is not None
    assert entry.feedback == CountedFeedback(4)


@pytest.fixture
def replicas(redis_client: aioredis.Redis, namespace: str) -> list[RedisRequestIndex]:
    return [
        RedisRequestIndex(redis_client, namespace=namespace, settings=PATIENT) for _ in range(2)
    ]


@pytest.mark.redis
async def test_lookup_waits_for_another_replica_to_publish(
    replicas: list[RedisRequestIndex],
) -> None:
    a, b = replicas
    a.record(make_ix("r1"))
    waiting = asyncio.create_task(b.lookup("r1"))
    await asyncio.sleep(0.15)  # b has looked at least once and found nothing
    assert not waiting.done()
    await a.flush()
    entry = await waiting
    assert entry is not None
    assert entry.variant == "canary"


@pytest.mark.redis
async def test_feedback_at_b_waits_for_a_to_publish(replicas: list[RedisRequestIndex]) -> None:
    a, b = replicas
    a.record(make_ix("r1"))
    rating = asyncio.create_task(b.set_feedback("r1", CountedFeedback(5)))
    await asyncio.sleep(0.15)  # b has tried at least once and found nothing
    assert not rating.done()
    await a.flush()
    change = await rating
    assert change is not None
    assert (change.request.variant, change.previous) == ("canary", None)


@pytest.mark.redis
async def test_feedback_at_the_serving_replica_before_publishing(
    replicas: list[RedisRequestIndex],
) -> None:
    a, b = replicas
    a.record(make_ix("r1"))
    change = await a.set_feedback("r1", CountedFeedback(4, ("cultural",)))
    assert change is not None
    assert change.previous is None
    await a.flush()  # publishing later keeps the feedback
    seen_by_b = await b.lookup("r1")
    assert seen_by_b is not None
    assert seen_by_b.feedback == CountedFeedback(4, ("cultural",))
    assert seen_by_b.language == "ta"


@pytest.mark.redis
async def test_concurrent_ratings_on_two_replicas_count_once(
    replicas: list[RedisRequestIndex],
) -> None:
    a, b = replicas
    a.record(make_ix("r1"))
    await a.flush()
    ca, cb = await asyncio.gather(
        a.set_feedback("r1", CountedFeedback(1)), b.set_feedback("r1", CountedFeedback(5))
    )
    assert ca is not None
    assert cb is not None
    # Serialised by Redis: whichever ran second replaced the first, never both "new".
    assert (ca.previous, cb.previous) in [(None, CountedFeedback(1)), (CountedFeedback(5), None)]


@pytest.mark.redis
async def test_rating_via_b_lands_on_the_variant_and_bucket_served_by_a(
    replicas: list[RedisRequestIndex], redis_client: aioredis.Redis, namespace: str
) -> None:
    a, b = replicas
    recorder_a, recorder_b = (
        WindowRecorder(RedisWindowStore(redis_client, namespace=namespace)) for _ in range(2)
    )
    served = make_ix("r1", created_at=NOW + 5)  # an hour ago: its bucket closed long since
    a.record(served)
    recorder_a.record(served)
    await asyncio.gather(a.flush(), recorder_a.flush())
    for fb in (
        CountedFeedback(2, ("wrong",)),
        CountedFeedback(4, ("wrong", "cultural")),
        CountedFeedback(4),
    ):
        change = await b.set_feedback("r1", fb)
        assert change is not None
        recorder_b.record_feedback(change.request.window_key(10), change.previous, fb)
        await recorder_b.flush()
    store = RedisWindowStore(redis_client, namespace=namespace)
    canary = await store.read("tara-tutor", "math:*", "canary", NOW, NOW + 10)
    assert canary.requests == 1
    assert canary.ratings == [0, 0, 0, 1, 0]
    assert (canary.tags.get("wrong", 0), canary.tags.get("cultural", 0)) == (0, 0)
    assert (await store.read("tara-tutor", "math:*", "stable", NOW, NOW + 10)).rating_count == 0
    rest = await store.read("tara-tutor", "math:*", "canary", NOW + 10, time.time() + 10)
    assert rest.rating_count == 0


@pytest.fixture
async def proxied_client(redis_proxy: Any) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_proxy.url, retry=Retry(NoBackoff(), 0))
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_outage_is_reported_and_publishing_resumes(
    redis_proxy: Any, proxied_client: aioredis.Redis, redis_client: aioredis.Redis, namespace: str
) -> None:
    index = RedisRequestIndex(proxied_client, namespace=namespace, settings=FAST)
    index.record(make_ix("r1"))
    await redis_proxy.stop()
    await index.flush()
    assert index.flush_failures == 1
    with pytest.raises(IndexUnavailableError):
        await index.lookup("r2")
    with pytest.raises(IndexUnavailableError):
        await index.set_feedback("r1", CountedFeedback(3))
    await redis_proxy.start()
    await index.flush()
    other = RedisRequestIndex(redis_client, namespace=namespace, settings=FAST)
    assert await other.lookup("r1") is not None


@pytest.mark.redis
async def test_unpublished_queue_is_bounded(redis_client: aioredis.Redis, namespace: str) -> None:
    settings = TelemetryStatsSettings(index_cache_size=2, index_lookup_wait=0)
    index = RedisRequestIndex(redis_client, namespace=namespace, settings=settings)
    for rid in ("a", "b", "c"):
        index.record(make_ix(rid))
    assert index.dropped == 1
    await index.flush()
    other = RedisRequestIndex(redis_client, namespace=namespace, settings=settings)
    assert await other.lookup("a") is None
    assert await other.lookup("c") is not None


@pytest.mark.redis
async def test_a_backlog_is_published_in_chunks(replicas: list[RedisRequestIndex]) -> None:
    a, b = replicas
    for i in range(PUBLISH_CHUNK + 1):
        a.record(make_ix(f"r{i}"))
    await a.flush()
    assert await b.lookup("r0") is not None
    assert await b.lookup(f"r{PUBLISH_CHUNK}") is not None


@pytest.mark.redis
async def test_background_publishing(redis_client: aioredis.Redis, namespace: str) -> None:
    settings = TelemetryStatsSettings(flush_interval=0.02, index_lookup_wait=30)
    a = RedisRequestIndex(redis_client, namespace=namespace, settings=settings)
    b = RedisRequestIndex(redis_client, namespace=namespace, settings=settings)
    a.start()
    a.record(make_ix("r1"))
    assert await b.lookup("r1") is not None  # published by the loop, not by the test
    a.record(make_ix("r2"))
    await a.aclose()
    assert await b.lookup("r2") is not None


@pytest.mark.redis
async def test_published_hash_layout_and_expiry(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """The stored form other replicas (and older gateway versions) read."""
    index = RedisRequestIndex(redis_client, namespace=namespace, settings=FAST)
    created = NOW + 3.123456789
    index.record(make_ix("r1", created_at=created, segment='a"b\\c', model="ಮಾದರಿ"))
    index.record(make_ix("r2", subject=None, language=None, student_hash=None))
    await index.flush()
    r1 = await redis_client.hgetall(f"{namespace}:ix:r1")
    assert {k.decode(): v.decode() for k, v in r1.items()} == {
        "c": repr(created),
        "t": "tara-tutor",
        "s": 'a"b\\c',
        "v": "canary",
        "m": "ಮಾದರಿ",
        "sub": "math",
        "lang": "ta",
        "sh": "s1",
    }
    retention = FAST.index_retention_seconds
    assert await redis_client.expiretime(f"{namespace}:ix:r1") == int(created + retention) + 1
    r2 = await redis_client.hgetall(f"{namespace}:ix:r2")
    assert sorted(k.decode() for k in r2) == ["c", "m", "s", "t", "v"]


@pytest.mark.redis
async def test_unpublished_and_published_entries_are_local(
    replicas: list[RedisRequestIndex],
) -> None:
    a, b = replicas
    a.record(make_ix("r1"))
    queued = await a.lookup("r1")  # found before any flush, without Redis
    assert queued is not None
    assert queued.variant == "canary"
    await a.set_feedback("r1", CountedFeedback(3))
    a.record(make_ix("r1"))  # a re-record before publishing keeps the local feedback
    await a.flush()
    held = await a.lookup("r1")
    assert held is not None
    assert held.feedback == CountedFeedback(3)
    from_b = await b.lookup("r1")
    assert from_b is not None
    assert from_b.feedback == CountedFeedback(3)


@pytest.mark.redis
async def test_a_failed_flush_keeps_the_newest_within_the_bound(
    redis_proxy: Any, proxied_client: aioredis.Redis, redis_client: aioredis.Redis, namespace: str
) -> None:
    settings = TelemetryStatsSettings(index_cache_size=3, index_lookup_wait=0)
    index = RedisRequestIndex(proxied_client, namespace=namespace, settings=settings)
    for rid in ("a", "b"):
        index.record(make_ix(rid))
    await redis_proxy.stop()
    await index.flush()
    assert (index.flush_failures, index.dropped) == (1, 0)
    for rid in ("c", "d"):
        index.record(make_ix(rid))
    assert index.dropped == 1  # "a", the oldest, made room for "d"
    await redis_proxy.start()
    await index.flush()
    other = RedisRequestIndex(redis_client, namespace=namespace, settings=settings)
    assert await other.lookup("a") is None
    for rid in ("b", "c", "d"):
        assert await other.lookup(rid) is not None


@pytest.mark.redis
async def test_the_local_cache_keeps_the_most_recent_ids(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    settings = TelemetryStatsSettings(index_cache_size=2, index_lookup_wait=0)
    index = RedisRequestIndex(redis_client, namespace=namespace, settings=settings)
    for rid in ("a", "b", "c"):
        index.record(make_ix(rid))
        await index.flush()
    assert list(index._recent) == ["b", "c"]
    assert await index.lookup("a") is not None  # read back from Redis, now the newest
    assert list(index._recent) == ["c", "a"]


def test_the_local_copy_is_compact_and_shares_repeated_strings() -> None:
    # Equal strings from separate requests (as parsed bodies give them) become one object.
    first = make_ix("r1", track="".join(["tara-", "tutor"]), subject="".join(["ma", "th"]))
    second = make_ix("r2", track="".join(["tara-", "tut", "or"]), subject="".join(["m", "ath"]))
    assert first.track is not second.track
    held_1, held_2 = held_form(first), held_form(second)
    assert held_1[1] is held_2[1]  # track
    assert held_1[5] is held_2[5]  # subject
    assert held_entry("r1", held_1) == IndexedRequest.from_interaction(first)
    no_context = make_ix("r3", subject=None, language=None, student_hash=None)
    assert held_entry("r3", held_form(no_context)) == IndexedRequest.from_interaction(no_context)


def publisher_and_reader(
    client: aioredis.Redis, namespace: str
) -> tuple[RedisRequestIndex, RedisRequestIndex, list[tuple[str, int]]]:
    """Two replicas' indexes on one namespace, and what the first one drops."""
    drops: list[tuple[str, int]] = []
    a = RedisRequestIndex(
        client,
        namespace=namespace,
        settings=FAST,
        on_drop=lambda reason, n: drops.append((reason, n)),
    )
    return a, RedisRequestIndex(client, namespace=namespace, settings=FAST), drops


@pytest.mark.redis
async def test_an_entry_redis_refuses_loses_no_other_entry(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """Redis refuses an entry whose key holds another type (WRONGTYPE): that entry alone
    is dropped as ``rejected``; the others, before and after it, are published."""
    a, b, drops = publisher_and_reader(redis_client, namespace)
    await redis_client.set(keys.key(namespace, keys.INTERACTIONS, "r5"), "not a hash")
    for i in range(8):
        a.record(make_ix(f"r{i}"))
    await a.flush()
    assert all([await b.lookup(f"r{i}") is not None for i in (0, 1, 2, 3, 4, 6, 7)])
    assert await redis_client.get(keys.key(namespace, keys.INTERACTIONS, "r5")) == b"not a hash"
    assert drops == [("rejected", 1)]
    assert a.flush_failures == 0


@pytest.mark.redis
async def test_a_poison_entry_loses_no_other_entry(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    a, b, drops = publisher_and_reader(redis_client, namespace)
    for i in range(5):
        a.record(make_ix(f"r{i}", subject="\udcff" if i == 2 else "math"))
    await a.flush()
    assert [await b.lookup(f"r{i}") is not None for i in range(5)] == [
        True,
        True,
        False,
        True,
        True,
    ]
    assert drops == [("rejected", 1)]
    a.record(make_ix("r9"))  # publishing is not stuck behind the poison entry
    await a.flush()
    assert await b.lookup("r9") is not None


@pytest.mark.parametrize(
    "created", [NOW + 3.123456789, 1_765_000_000.0, 1_765_000_000.1, 1_999_999_999.999999, 0.1]
)
def test_the_published_time_is_the_text_repr_gives(created: float) -> None:
    """Older gateway versions published ``repr(created_at)``; the text stays the same."""
    assert interaction_row(make_ix(created_at=created), 60.0)[1] == repr(created)
