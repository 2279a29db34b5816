"""The telemetry reader against real stores: SQLite log + memory windows, PostgreSQL + Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from triggers_traffic import CFG, DAY, HI_MATH, NOW, TA_PHYS, Maker, fill, traffic

from tara.telemetry.log_postgres import PostgresInteractionLog
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.telemetry.window_recorder import add_interaction
from tara.telemetry.window_store import WindowKey, WindowStore, bucket_start
from tara.telemetry.window_store_memory import MemoryWindowStore
from tara.telemetry.window_store_redis import RedisWindowStore
from tara.triggers.model import CellStats, Scope
from tara.triggers.reader import TelemetryReader
from tara.triggers.state import TriggerState


async def test_reader_sums_periods_scopes_and_volume_from_the_sqlite_log(tmp_path: Path) -> None:
    log = SqliteInteractionLog(str(tmp_path / "log.db"))
    try:
        await fill(log, traffic(NOW))
        state = TriggerState(tmp_path / "triggers.json")
        state.record("data_volume", TA_PHYS, NOW - 10 * DAY + 102)  # after 2 of its 5 ratings
        reader = TelemetryReader(log, CFG, min_rating=4, tracks=["tara-tutor"])
        obs = await reader.read(NOW, state)
    finally:
        await log.aclose()
    now, before = obs.stats(HI_MATH), obs.stats(HI_MATH, previous=True)
    assert (now.requests, now.rating_count, now.negative_ratings) == (40, 40, 20)
    assert now.tags == {"cultural": 6, "wrong": 14}
    assert now.user_retries == 14
    assert now.relevance_count == 26
    assert (before.requests, before.rating_mean) == (40, 5.0)
    assert obs.stats(Scope(language="hi", subject="biology")).requests == 25
    # High quality since the last run (or over the lookback): 40 + 20 + the 40-day-old one.
    assert obs.high_quality[HI_MATH] == 61
    assert obs.volume_since[HI_MATH] == NOW - CFG.volume_lookback.total_seconds()
    assert obs.high_quality[TA_PHYS] == 3
    assert obs.volume_since[TA_PHYS] == NOW - 10 * DAY + 102
    assert obs.high_quality[Scope(language="hi", subject="biology")] == 0
    assert obs.seen_current["subject"] == {"math": 40, "biology": 25}
    assert obs.seen_previous["language"] == {"hi": 40, "ta": 5}
    assert obs.seen_current["grade"] == {"8": 40, "11": 25}
    # No window store: per-track latency comes from the same log pass.
    assert sum(obs.tracks_current["tara-tutor"].latency) == 65
    assert sum(obs.tracks_previous["tara-tutor"].latency) == 45


async def test_volume_since_overrides_every_last_run(tmp_path: Path) -> None:
    log = SqliteInteractionLog(str(tmp_path / "log.db"))
    try:
        await fill(log, traffic(NOW))
        state = TriggerState(tmp_path / "triggers.json")
        state.record("data_volume", HI_MATH, NOW - DAY)
        reader = TelemetryReader(log, CFG, min_rating=5)
        obs = await reader.read(NOW, state, volume_since=NOW - 5 * DAY)
    finally:
        await log.aclose()
    assert obs.high_quality[HI_MATH] == 20
    assert obs.volume_since[HI_MATH] == NOW - 5 * DAY
    assert TA_PHYS not in obs.high_quality  # only 4-star ratings, outside the range anyway


async def _window_latency(store: WindowStore, now: float, seconds: tuple[float, float]) -> None:
    make = Maker()
    deltas: dict[WindowKey, dict[str, float]] = {}
    for when, latency in ((now - 2 * DAY, seconds[0]), (now - 9 * DAY, seconds[1])):
        for i in range(150):
            ix = make(when + i, latency_s=latency * (0.5 + i / 150))
            key = WindowKey("tara-tutor", "all", "stable", bucket_start(when + i, 10))
            add_interaction(deltas.setdefault(key, {}), ix)
    await store.add(deltas)


async def test_reader_takes_track_latency_from_the_window_store(tmp_path: Path) -> None:
    store = MemoryWindowStore(clock=lambda: NOW)
    await _window_latency(store, NOW, (2.0, 1.0))
    log = SqliteInteractionLog(str(tmp_path / "log.db"))
    try:
        await fill(log, traffic(NOW))
        reader = TelemetryReader(log, CFG, min_rating=4, windows=store, tracks=["tara-tutor"])
        obs = await reader.read(NOW, TriggerState(tmp_path / "t.json"))
    finally:
        await log.aclose()
    # The store's numbers, not the log's (the log holds 65 and 45 answers of 1 s).
    assert obs.tracks_current["tara-tutor"].requests == 150
    assert obs.tracks_previous["tara-tutor"].requests == 150
    p95 = obs.tracks_current["tara-tutor"].latency_quantile(0.95)
    assert p95 is not None
    assert p95 > 2.0


@pytest.mark.postgres
@pytest.mark.redis
async def test_reader_on_postgres_and_redis(
    pg_schema: tuple[str, str], redis_client: aioredis.Redis, namespace: str
) -> None:
    dsn, schema = pg_schema
    now = time.time()  # Redis expires buckets by the real clock
    store = RedisWindowStore(redis_client, namespace=namespace)
    await _window_latency(store, now, (1.5, 1.0))
    log = PostgresInteractionLog(dsn, schema=schema)
    try:
        await fill(log, traffic(now))
        reader = TelemetryReader(log, CFG, min_rating=4, windows=store, tracks=["tara-tutor"])
        obs = await reader.read(now, TriggerState(Path("/nonexistent/t.json")))
    finally:
        await log.aclose()
    assert obs.stats(HI_MATH).negative_ratings == 20
    assert obs.stats(HI_MATH).tags["cultural"] == 6
    assert obs.high_quality[HI_MATH] == 61
    assert obs.seen_current["subject"]["biology"] == 25
    assert obs.tracks_current["tara-tutor"].requests == 150
    assert obs.tracks_previous["tara-tutor"].requests == 150


def _asked(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_reader_counts_grade_and_topic_cells_of_the_current_period(tmp_path: Path) -> None:
    make = Maker()
    cur = NOW - DAY
    rows = [
        # Named by the app; rated and tagged.
        make(cur, topic="fractions", grade="7", rating=2, tags=["wrong"], user_retry=True),
        make(cur + 1, topic="fractions", grade="7", rating=5, tags=["cultural"]),
        # Derived from the question (Hindi: quadratic equation), or nothing to derive from.
        make(cur + 2, messages=_asked("द्विघात समीकरण कैसे हल करें?"), rating=1, tags=["irrelevant"]),
        make(cur + 3, messages=_asked("hello"), grade=None),
        make(cur + 4, messages=None, language="ta", subject="physics", grade="9"),
        # The previous period never makes cells.
        make(NOW - 9 * DAY, topic="fractions", rating=1),
    ]
    log = SqliteInteractionLog(str(tmp_path / "log.db"))
    try:
        await fill(log, rows)
        obs = await TelemetryReader(log, CFG, min_rating=4).read(NOW, TriggerState(tmp_path))
    finally:
        await log.aclose()

    def topic(name: str, scope: Scope = HI_MATH) -> CellStats:
        return obs.topics[Scope(language=scope.language, subject=scope.subject, topic=name)]

    # CellStats(requests, user_retries, ratings, rating_sum, flagged, derived)
    assert topic("fractions") == CellStats(2, 1, 2, 7, 1, 0)
    assert topic("algebra") == CellStats(1, 0, 1, 1, 1, 1)
    assert topic("other") == CellStats(1, 0, 0, 0, 0, 1)  # "hello" matches no topic
    assert topic("other", TA_PHYS) == CellStats(1, 0, 0, 0, 0, 1)  # no text: metadata capture
    grades = {s.key: c.requests for s, c in obs.grades.items()}
    assert grades == {
        "language=hi,subject=math,grade=7": 2,
        "language=hi,subject=math,grade=8": 1,
        "language=hi,subject=math,grade=other": 1,
        "language=ta,subject=physics,grade=9": 1,
    }


async def test_reader_bounds_topics_per_segment(tmp_path: Path) -> None:
    make = Maker()
    rows = [make(NOW - DAY + i, topic=f"t{i % 5}") for i in range(50)]
    rows += [make(NOW - DAY + 100 + i, topic="algebra") for i in range(30)]
    cfg = CFG.model_copy(update={"max_topics_per_segment": 2, "max_grades_per_segment": 1})
    log = SqliteInteractionLog(str(tmp_path / "log.db"))
    try:
        await fill(log, rows)
        obs = await TelemetryReader(log, cfg, min_rating=4).read(NOW, TriggerState(tmp_path))
    finally:
        await log.aclose()
    topics = {s.topic: c.requests for s, c in obs.topics.items()}
    assert len(topics) == 3  # two named topics and other
    assert topics["algebra"] == 30  # 30 in a row: it takes a cell and keeps it
    assert sum(topics.values()) == 80
    assert {s.grade for s in obs.grades} == {"8"}
