"""The telemetry pipeline on real stores: feedback joins and replacements, retries, shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tara.settings import Settings
from tara.state import open_state
from tara.telemetry.interactions import Interaction
from tara.telemetry.log_backends import open_log
from tara.telemetry.metrics import MetricsRecorder
from tara.telemetry.pipeline import FeedbackAccepted, Telemetry
from tcp_relay import RedisProxy

TRACK = "tara-tutor"
QUESTION = [{"role": "user", "content": "What is 7 x 8?"}]


def interaction(request_id: str, **fields: Any) -> Interaction:
    """A finished canary request of student ``s-hash``."""
    base: dict[str, Any] = {
        "request_id": request_id,
        "created_at": time.time(),
        "track": TRACK,
        "segment": "all",
        "variant": "canary",
        "model": "tara-candidate-good",
        "student_hash": "s-hash",
        "subject": "math",
        "language": "hi",
        "grade": "7",
        "status": 200,
        "latency_s": 0.2,
        "ttft_s": 0.05,
        "messages": QUESTION,
        "answer": "56",
    }
    base.update(fields)
    return Interaction(**base)


def settings_for(database_url: str, **overrides: Any) -> Settings:
    telemetry = {"flush_interval": 0.05, **overrides.pop("telemetry", {})}
    return Settings(database_url=database_url, telemetry=telemetry, **overrides)


class Harness:
    """A started :class:`Telemetry` on a fresh registry."""

    def __init__(self, settings: Settings, redis: aioredis.Redis | None) -> None:
        self.registry = CollectorRegistry()
        self.metrics = MetricsRecorder.on(self.registry, settings.subjects, settings.languages)
        self.telemetry = Telemetry(settings, self.metrics, open_state(settings, redis=redis))

    def record(self, ix: Interaction) -> None:
        for sink in [self.metrics, *self.telemetry.sinks]:
            sink.record(ix)

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def memory_sqlite(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(settings_for(f"sqlite:///{tmp_path / 'log.db'}"), None)
    async with h.telemetry:
        yield h


@pytest.fixture
async def redis_postgres(
    redis_client: aioredis.Redis, pg_schema: tuple[str, str], namespace: str
) -> AsyncIterator[Harness]:
    dsn, schema = pg_schema
    settings = settings_for(dsn, redis_namespace=namespace, telemetry={"pg_schema": schema})
    h = Harness(settings, redis_client)
    async with h.telemetry:
        yield h


@pytest.fixture(
    params=[
        "memory_sqlite",
        pytest.param("redis_postgres", marks=[pytest.mark.redis, pytest.mark.postgres]),
    ]
)
def harness(request: pytest.FixtureRequest) -> Harness:
    """The pipeline on each pair of backends."""
    h: Harness = request.getfixturevalue(request.param)
    return h


async def test_a_second_rating_replaces_the_first_everywhere(harness: Harness) -> None:
    tel = harness.telemetry
    ix = interaction("r-1")
    harness.record(ix)
    await tel.flush()

    first = await tel.submit_feedback("r-1", 2, ["wrong", "cultural"], 0.4, "not right")
    assert isinstance(first, FeedbackAccepted)
    assert not first.replaced
    assert (first.request.variant, first.request.segment) == ("canary", "all")
    second = await tel.submit_feedback("r-1", 5, ["cultural", "too_long"], None, None)
    assert isinstance(second, FeedbackAccepted)
    assert second.replaced
    await tel.flush()

    stats = await tel.store.read(TRACK, "all", "canary", ix.created_at - 60, ix.created_at + 60)
    assert stats.ratings == [0, 0, 0, 0, 1]
    assert stats.tags.get("wrong", 0) == 0
    assert (stats.tags["cultural"], stats.tags["too_long"]) == (1, 1)
    assert (stats.relevance_count, stats.requests) == (0, 1)
    row = await tel.log.get("r-1")
    assert row is not None
    assert (row.rating, row.tags, row.relevance, row.comment) == (
        5,
        ["cultural", "too_long"],
        None,
        None,
    )
    # Prometheus keeps the first rating and counts tags when newly added.
    labels = {"track": TRACK, "variant": "canary", "subject": "math", "language": "hi"}
    assert harness.sample("tara_feedback_rating_count", **labels) == 1
    assert harness.sample("tara_feedback_rating_sum", **labels) == 2
    tag = {"track": TRACK, "variant": "canary"}
    assert harness.sample("tara_feedback_tags_total", **tag, tag="cultural") == 1
    assert harness.sample("tara_feedback_tags_total", **tag, tag="wrong") == 1
    assert harness.sample("tara_feedback_tags_total", **tag, tag="other") == 1  # too_long


async def test_unknown_request_id_is_unknown(harness: Harness) -> None:
    assert await harness.telemetry.submit_feedback("never-served", 4) == "unknown"
    await harness.telemetry.flush()
    assert await harness.telemetry.log.get("never-served") is None


async def test_same_question_again_is_one_retry_in_metrics_log_and_window(
    harness: Harness,
) -> None:
    tel = harness.telemetry
    first = interaction("q-1")
    again = interaction("q-2", messages=[{"role": "user", "content": "  what is 7 X 8 ?"}])
    other = interaction("q-3", student_hash="someone-else")
    flagged = interaction("q-4", user_retry=True)
    for ix in (first, again, other):
        harness.record(ix)
    await tel.flush()
    harness.record(flagged)  # the app said so: counted once, by the sinks themselves
    await tel.flush()

    labels = {"track": TRACK, "variant": "canary", "subject": "math", "language": "hi"}
    assert harness.sample("tara_user_retries_total", **labels) == 2
    rows = {rid: await tel.log.get(rid) for rid in ("q-1", "q-2", "q-3", "q-4")}
    assert {rid: row.user_retry for rid, row in rows.items() if row} == {
        "q-1": False,
        "q-2": True,
        "q-3": False,
        "q-4": True,
    }
    stats = await tel.store.read(TRACK, "all", "canary", first.created_at - 60, time.time() + 60)
    assert (stats.user_retries, stats.requests) == (2, 4)


async def test_a_failed_canary_attempt_is_not_a_retry_of_its_own_request(
    harness: Harness,
) -> None:
    attempt = interaction("f-1-canary", status=502, error_class="upstream", answer=None)
    served = interaction("f-1", variant="stable", model="tara-stable", fallback=True)
    harness.record(attempt)
    harness.record(served)
    await harness.telemetry.flush()
    assert harness.telemetry.detector.retries_found == 0
    row = await harness.telemetry.log.get("f-1")
    assert row is not None
    assert not row.user_retry


async def test_shutdown_writes_everything_queued(tmp_path: Path) -> None:
    # A writer that would wait a minute for its batch: only shutdown can write it.
    url = f"sqlite:///{tmp_path / 'log.db'}"
    settings = settings_for(url, telemetry={"flush_interval": 60, "batch_size": 10_000})
    h = Harness(settings, None)
    async with h.telemetry:
        for i in range(300):
            h.record(interaction(f"s-{i}", student_hash=f"student-{i}"))
        assert await h.telemetry.submit_feedback("s-7", 4) != "unknown"
    assert h.telemetry.writer.stats.written == 301
    reader = open_log(url, settings.telemetry)
    try:
        rows = [ix async for ix in reader.iter_interactions()]
        seven = await reader.get("s-7")
    finally:
        await reader.aclose()
    assert sorted(r.request_id for r in rows) == sorted(f"s-{i}" for i in range(300))
    assert seven is not None
    assert seven.rating == 4


@pytest.mark.redis
async def test_feedback_while_redis_is_down_is_unavailable(
    tmp_path: Path, namespace: str, redis_client: aioredis.Redis, redis_proxy: RedisProxy
) -> None:
    del redis_client  # requested so the namespace is cleaned up afterwards
    client = aioredis.Redis.from_url(redis_proxy.url)
    settings = settings_for(f"sqlite:///{tmp_path / 'log.db'}", redis_namespace=namespace)
    h = Harness(settings, client)
    try:
        async with h.telemetry:
            h.record(interaction("u-1"))
            await h.telemetry.flush()
            await redis_proxy.stop()
            assert await h.telemetry.submit_feedback("u-1", 3) == "unavailable"
            await redis_proxy.start()
            assert isinstance(await h.telemetry.submit_feedback("u-1", 3), FeedbackAccepted)
    finally:
        await client.aclose()


async def test_a_retry_flag_keeps_the_rest_of_the_row_and_its_rating(harness: Harness) -> None:
    # The detector holds no record: the log gets only the flag, seconds after the row.
    tel = harness.telemetry
    first = interaction("k-1", answer="Fifty-six.")
    harness.record(first)
    harness.record(interaction("k-2"))
    assert isinstance(await tel.submit_feedback("k-2", 2, ["wrong"]), FeedbackAccepted)
    await tel.flush()
    row = await tel.log.get("k-1")
    assert row is not None
    assert not row.user_retry  # the original, not the retry
    again = await tel.log.get("k-2")
    assert again is not None
    assert again.user_retry
    assert (again.rating, again.tags) == (2, ["wrong"])
    assert again.messages == first.messages
