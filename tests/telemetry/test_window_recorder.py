"""WindowRecorder: pure deltas, batching, replicas merging in real Redis, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara.telemetry.flush_loop import FlushLoop
from tara.telemetry.interactions import Interaction
from tara.telemetry.request_index import CountedFeedback
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_recorder import WindowRecorder, feedback_delta, interaction_delta
from tara.telemetry.window_store import Deltas, WindowKey, bucket_start
from tara.telemetry.window_store_memory import MemoryWindowStore
from tara.telemetry.window_store_redis import RedisWindowStore
from tara.telemetry.windows import latency_bucket

NOW = bucket_start(time.time(), 3600) - 3600 + 120
"""A recent, bucket-aligned moment: fine buckets for it are alive in every store."""


def make_ix(request_id: str = "r1", **changes: Any) -> Interaction:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "created_at": NOW + 1.5,
        "track": "tara-tutor",
        "segment": "all",
        "variant": "canary",
        "model": "ft-1",
        "student_hash": "s1",
        "subject": "math",
        "language": "hi",
        "grade": "8",
        "status": 200,
        "latency_s": 0.8,
        "ttft_s": 0.2,
        "prompt_tokens": 30,
        "completion_tokens": 70,
    }
    fields.update(changes)
    return Interaction(**fields)


def test_delta_of_an_answered_request() -> None:
    assert interaction_delta(make_ix()) == {
        "req": 1,
        f"lat:{latency_bucket(0.8)}": 1,
        "lat_sum": 0.8,
        f"ttft:{latency_bucket(0.2)}": 1,
        "tok_in": 30,
        "tok_out": 70,
        "stu:s1": 1,
    }


def test_delta_of_a_failed_flagged_retry_has_no_latency() -> None:
    ix = make_ix(error_class="timeout", status=504, completion_tokens=None, user_retry=True)
    assert interaction_delta(ix) == {
        "req": 1, "err:timeout": 1, "tok_in": 30, "uretry": 1, "stu:s1": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "who"),
    [
        ({}, {"stu:s1": 1}),
        ({"student_hash": None}, {"anon": 1}),
        ({"variant": "stable", "fallback": True}, {"fb": 1}),
    ],
)
def test_delta_names_the_student_or_says_why_not(
    changes: dict[str, Any], who: dict[str, int]
) -> None:
    delta = interaction_delta(make_ix(**changes))
    assert {k: v for k, v in delta.items() if k in ("anon", "fb") or k.startswith("stu:")} == who


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, CountedFeedback(4), {"rat:4": 1}),
        (
            CountedFeedback(2, ("wrong",)),
            CountedFeedback(5),
            {"rat:2": -1, "rat:5": 1, "tag:wrong": -1},
        ),
        (CountedFeedback(3, ("cultural",)), CountedFeedback(3, ("cultural",)), {}),
        (
            CountedFeedback(None, ("a", "a"), 0.5),
            CountedFeedback(1, ("a", "b"), 0.25),
            {"rat:1": 1, "tag:b": 1, "rel_sum": -0.25},
        ),
        (CountedFeedback(4, (), 0.5), CountedFeedback(4), {"rel_n": -1, "rel_sum": -0.5}),
    ],
)
def test_feedback_delta(
    previous: CountedFeedback | None, current: CountedFeedback, expected: dict[str, float]
) -> None:
    assert feedback_delta(previous, current) == pytest.approx(expected)


async def test_requests_are_batched_per_bucket_and_flushed_once() -> None:
    store = MemoryWindowStore()
    recorder = WindowRecorder(store)
    for i in range(5):
        recorder.record(make_ix(f"r{i}", created_at=NOW + i))  # one 10 s bucket
    recorder.record(make_ix("late", created_at=NOW + 10, variant="stable"))
    assert recorder.pending_keys == 2
    assert await recorder.flush()
    assert recorder.pending_keys == 0
    assert recorder.flushes == 1
    canary = await store.read("tara-tutor", "all", "canary", NOW, NOW + 20)
    assert canary.requests == 5
    assert canary.completion_tokens == 350
    assert (await store.read("tara-tutor", "all", "stable", NOW, NOW + 20)).requests == 1
    assert await recorder.flush()  # nothing pending is a success
    assert recorder.flushes == 1


async def test_a_record_that_cannot_be_counted_is_dropped_without_raising() -> None:
    recorder = WindowRecorder(MemoryWindowStore())
    recorder.record(make_ix(created_at=float("nan")))
    assert recorder.pending_keys == 0


async def test_a_malformed_record_in_a_counted_bucket_leaves_it_untouched() -> None:
    store = MemoryWindowStore()
    recorder = WindowRecorder(store)
    recorder.record(make_ix("r1"))
    recorder.record(make_ix("r2", latency_s="slow"))  # no count at all, not half of one
    recorder.record(make_ix("r3", ttft_s="soon"))
    await recorder.flush()
    canary = await store.read("tara-tutor", "all", "canary", NOW, NOW + 20)
    assert canary.requests == 1
    assert canary.completion_tokens == 70


async def test_pending_buckets_are_bounded_dropping_the_oldest() -> None:
    store = MemoryWindowStore()
    recorder = WindowRecorder(store, TelemetryStatsSettings(max_pending_keys=2))
    for i in range(3):
        recorder.record(make_ix(f"r{i}", created_at=NOW + 10 * i))
    assert recorder.dropped_keys == 1
    await recorder.flush()
    stats = await store.read("tara-tutor", "all", "canary", NOW, NOW + 30)
    assert stats.requests == 2
    assert (await store.read("tara-tutor", "all", "canary", NOW, NOW + 10)).requests == 0


@pytest.mark.redis
async def test_two_replicas_sharing_redis_merge_into_one_sum(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    replicas = [WindowRecorder(RedisWindowStore(redis_client, namespace=namespace)) for _ in "ab"]
    for n, recorder in enumerate(replicas):
        for i in range(3 + n):
            recorder.record(make_ix(f"{n}-{i}", latency_s=0.1 * (n + 1)))
        recorder.record(make_ix(f"{n}-err", variant="stable", error_class="upstream"))
        recorder.record_user_retry(WindowKey("tara-tutor", "all", "canary", NOW))
    await asyncio.gather(*(r.flush() for r in replicas))
    reader = RedisWindowStore(redis_client, namespace=namespace)
    got = await reader.read("tara-tutor", "all", "canary", NOW, NOW + 10)
    assert got.requests == 7
    assert got.latency_sum == pytest.approx(3 * 0.1 + 4 * 0.2)
    assert got.user_retries == 2
    stable = await reader.read("tara-tutor", "all", "stable", NOW, NOW + 10)
    assert (stable.requests, stable.error_rate) == (2, 1.0)


@pytest.fixture
async def proxied_client(redis_proxy: Any) -> AsyncIterator[aioredis.Redis]:
    """A client that reaches Redis through the cuttable proxy and does not retry by itself."""
    client = aioredis.Redis.from_url(redis_proxy.url, retry=Retry(NoBackoff(), 0))
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_store_outage_then_recovery_loses_and_doubles_nothing(
    redis_proxy: Any, proxied_client: aioredis.Redis, redis_client: aioredis.Redis, namespace: str
) -> None:
    recorder = WindowRecorder(RedisWindowStore(proxied_client, namespace=namespace))
    recorder.record(make_ix("before"))
    assert await recorder.flush()
    recorder.record(make_ix("a"))
    recorder.record_feedback(
        WindowKey("tara-tutor", "all", "canary", NOW), None, CountedFeedback(5)
    )
    await redis_proxy.stop()
    assert not await recorder.flush()
    assert not await recorder.flush()
    recorder.record(make_ix("b"))
    recorder.record(make_ix("c", created_at=NOW + 20))
    assert recorder.flush_failures == 2
    assert recorder.pending_keys == 2
    await redis_proxy.start()
    assert await recorder.flush()
    got = await RedisWindowStore(redis_client, namespace=namespace).read(
        "tara-tutor", "all", "canary", NOW, NOW + 30
    )
    assert got.requests == 4
    assert got.ratings == [0, 0, 0, 0, 1]


class SignallingStore(MemoryWindowStore):
    """The memory store, telling the test when a flush arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.added = asyncio.Event()

    async def add(self, deltas: Deltas) -> None:
        await super().add(deltas)
        if deltas:
            self.added.set()


async def test_background_loop_flushes_and_close_flushes_the_rest() -> None:
    store = SignallingStore()
    recorder = WindowRecorder(store, TelemetryStatsSettings(flush_interval=0.02))
    recorder.start()
    recorder.start()  # idempotent
    recorder.record(make_ix("r1"))
    await store.added.wait()
    recorder.record(make_ix("r2"))
    await recorder.aclose()
    assert (await store.read("tara-tutor", "all", "canary", NOW, NOW + 10)).requests == 2


@pytest.mark.redis
async def test_deltas_recorded_during_a_failing_flush_are_kept(
    redis_proxy: Any, proxied_client: aioredis.Redis, redis_client: aioredis.Redis, namespace: str
) -> None:
    recorder = WindowRecorder(RedisWindowStore(proxied_client, namespace=namespace))
    recorder.record(make_ix("a"))
    await redis_proxy.stop()
    flushing = asyncio.create_task(recorder.flush())
    await asyncio.sleep(0)
    recorder.record(make_ix("b"))
    recorder.record(make_ix("c", created_at=NOW + 10))
    key = WindowKey("tara-tutor", "all", "canary", NOW)
    recorder.record_feedback(
        key, CountedFeedback(3), CountedFeedback(3)
    )  # no change: nothing to add
    assert not await flushing
    await redis_proxy.start()
    assert await recorder.flush()
    got = await RedisWindowStore(redis_client, namespace=namespace).read(
        "tara-tutor", "all", "canary", NOW, NOW + 20
    )
    assert (got.requests, got.rating_count) == (3, 0)


async def test_flush_loop_survives_a_failing_flush(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def flush() -> None:
        calls.append(1)
        raise RuntimeError("store on fire")

    loop = FlushLoop(flush, 0.01, "test-loop")
    await loop.run(once=True)
    await loop.stop()  # never started: just one more flush
    assert len(calls) == 2
    assert "test-loop: flush failed" in caplog.text


async def test_flush_loops_keep_their_phase_so_their_flushes_never_pile_up() -> None:
    """Three sinks flush a second's worth of records each, every second. Started together
    and sleeping an interval after each flush, they flushed in the same loop iteration
    and their stalls added up; each now keeps to its own phase of a fixed-rate schedule,
    whatever its flushes take."""
    interval = 0.2
    loop = asyncio.get_running_loop()
    started = loop.time()
    times: dict[str, list[float]] = {"a": [], "b": [], "c": []}

    def flusher(name: str) -> Callable[[], Awaitable[None]]:
        async def flush() -> None:
            times[name].append(loop.time() - started)
            time.sleep(0.03 if name == "a" else 0.0)  # noqa: ASYNC251 (a flush that holds the loop)

        return flush

    loops = [
        FlushLoop(flusher(name), interval, name, phase=phase)
        for name, phase in (("a", 0.0), ("b", 1 / 3), ("c", 2 / 3))
    ]
    for flush_loop in loops:
        flush_loop.start()
    await asyncio.sleep(interval * 5.5)
    for flush_loop in loops:
        await flush_loop.stop()
    for name, phase in (("a", 0.0), ("b", 1 / 3), ("c", 2 / 3)):
        ticks = times[name][:-1]  # the last is stop()'s
        assert len(ticks) >= 5, times
        for k, at in enumerate(ticks):
            assert (k + phase) * interval - 0.002 <= at < (k + phase) * interval + 0.06, times


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def real_store(request: pytest.FixtureRequest) -> RedisWindowStore | MemoryWindowStore:
    if request.param == "memory":
        return MemoryWindowStore()
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    namespace: str = request.getfixturevalue("namespace")
    return RedisWindowStore(client, namespace=namespace)


async def test_a_poison_bucket_loses_no_other_bucket(
    real_store: RedisWindowStore | MemoryWindowStore,
) -> None:
    drops: list[tuple[str, int]] = []
    recorder = WindowRecorder(real_store, on_drop=lambda reason, n: drops.append((reason, n)))
    for i, variant in enumerate(["stable", "canary", "stable", "canary"]):
        recorder.record(make_ix(f"r{i}", variant=variant, created_at=NOW + 10 * i))
    # A bucket no store can take (a NaN latency sum), among good ones.
    recorder.add(WindowKey("tara-tutor", "all", "canary", NOW + 50), {"lat_sum": float("nan")})
    assert await recorder.flush()
    assert drops == [("rejected", 1)]
    got = await real_store.read_many(
        [("tara-tutor", "all", "stable"), ("tara-tutor", "all", "canary")], NOW, NOW + 60
    )
    assert [s.requests for s in got.values()] == [2, 2]
    assert recorder.pending_keys == 0
    assert await recorder.flush()  # nothing left to retry, nothing counted twice
    again = await real_store.read("tara-tutor", "all", "canary", NOW, NOW + 60)
    assert again.requests == 2
