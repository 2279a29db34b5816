"""Every in-memory structure of the telemetry has a bound, and what it pushes out is counted.

The structures of the embedded state (request index, retry memory, window
buckets) and the queues in front of every store are each held to a setting;
overflow shows in ``tara_telemetry_dropped_total{sink,reason}`` (the log
writer's in ``tara_interactions_dropped_total``), never silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from tara.settings import Settings
from tara.state import open_state
from tara.telemetry.interactions import Interaction
from tara.telemetry.metrics import MetricsRecorder
from tara.telemetry.pipeline import Telemetry
from tara.telemetry.request_index import MemoryRequestIndex
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.user_retries import Ask, MemoryRetryMemory, UserRetryDetector
from tara.telemetry.window_recorder import WindowRecorder
from tara.telemetry.window_store import Series, WindowKey, bucket_start
from tara.telemetry.window_store_memory import MemoryWindowStore

NOW = float(bucket_start(time.time(), 3600))
STABLE = Series("tara-tutor", "all", "stable")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Drops:
    """An ``on_drop`` callback that adds up what it is told, by reason."""

    def __init__(self) -> None:
        self.by_reason: dict[str, int] = {}

    def __call__(self, reason: str, count: int) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + count


def interaction(request_id: str, question: str, **changes: Any) -> Interaction:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "created_at": NOW,
        "track": "tara-tutor",
        "segment": "all",
        "variant": "stable",
        "model": "tara-stable",
        "student_hash": f"student-of-{request_id}",
        "subject": "math",
        "language": "hi",
        "grade": "7",
        "status": 200,
        "latency_s": 0.1,
        "messages": [{"role": "user", "content": question}],
        "answer": "56",
    }
    fields.update(changes)
    return Interaction(**fields)


# -- the retry memory ---------------------------------------------------------------------
async def test_retry_memory_keeps_its_size_and_counts_questions_forgotten_inside_the_window() -> (
    None
):
    drops = Drops()
    memory = MemoryRetryMemory(600.0, size=3, clock=Clock(NOW + 10), on_drop=drops)
    first = [Ask(f"k{i}", NOW + i, f"r{i}") for i in range(5)]
    assert await memory.share_and_check(first, first) == [False] * 5
    assert len(memory) == 3
    assert drops.by_reason == {"memory_full": 2}
    again = [Ask("k4", NOW + 8, "again-4"), Ask("k0", NOW + 8, "again-0")]
    # The newest question is still remembered; the oldest was forgotten, its retry missed.
    assert await memory.share_and_check(again, again) == [True, False]
    assert len(memory) == 3


async def test_retry_memory_forgets_old_questions_without_counting_them() -> None:
    drops = Drops()
    clock = Clock(NOW)
    memory = MemoryRetryMemory(600.0, size=10, clock=clock, on_drop=drops)
    old = [Ask(f"old{i}", NOW, f"r{i}") for i in range(10)]
    await memory.share_and_check(old, [])
    clock.now = NOW + 1201  # two windows later: nothing can be retried any more
    new = [Ask(f"new{i}", clock.now, f"n{i}") for i in range(10)]
    await memory.share_and_check(new, [])
    assert len(memory) == 10
    assert drops.by_reason == {}


async def test_one_question_asked_over_and_over_keeps_a_few_asks() -> None:
    memory = MemoryRetryMemory(600.0, size=10, clock=Clock(NOW + 600))
    for i in range(100):
        await memory.share_and_check([Ask("same", NOW + i, f"r{i:03}")], [])
    assert memory.asks_held() <= 8
    assert await memory.share_and_check([], [Ask("same", NOW + 100, "r100")]) == [True]


# -- the retry detector's backlog ---------------------------------------------------------
async def test_retry_backlog_is_its_own_setting_and_its_overflow_is_counted() -> None:
    drops = Drops()
    detector = UserRetryDetector(
        MemoryRetryMemory(),
        WindowRecorder(MemoryWindowStore()),
        TelemetryStatsSettings(user_retry_backlog=2),
        on_drop=drops,
        clock=Clock(NOW),
    )
    for i in range(5):
        detector.record(interaction(f"r{i}", f"question {i}"))
    assert detector.pending == 2
    assert drops.by_reason == {"backlog_full": 3}


# -- the memory request index -------------------------------------------------------------
async def test_memory_index_counts_ids_pushed_out_while_they_could_still_be_rated() -> None:
    drops = Drops()
    index = MemoryRequestIndex(TelemetryStatsSettings(index_cache_size=100), on_drop=drops)
    for i in range(250):
        index.record(interaction(f"r{i}", "q", created_at=time.time()))
    assert len(index) <= 100
    assert drops.by_reason["evicted"] == 250 - len(index)
    assert await index.lookup("r249") is not None
    assert await index.lookup("r0") is None


# -- the memory window store --------------------------------------------------------------
async def test_window_store_keeps_its_bound_and_old_reads_fall_back_to_rollups() -> None:
    drops = Drops()
    clock = Clock(NOW + 2 * 3600)
    settings = TelemetryStatsSettings(memory_max_buckets=100)
    store = MemoryWindowStore(settings, clock=clock, on_drop=drops)
    # Two hours of 10 s buckets, one request each, added as they happen.
    for start in range(int(NOW), int(NOW) + 2 * 3600, 10):
        await store.add({WindowKey(*STABLE, start): {"req": 1, "stu:s1": 1}})
    assert len(store) <= 100
    assert drops.by_reason["fine_evicted"] > 0
    assert "memory_full" not in drops.by_reason
    # The first half hour: its fine buckets are gone, so the read counts the hour's
    # rollup, as for fine buckets that expired (coarser, never less).
    stats = await store.read(*STABLE, NOW, NOW + 1800)
    assert stats.requests == 360
    assert stats.students == 1
    recent = await store.read(*STABLE, NOW + 2 * 3600 - 300, NOW + 2 * 3600)
    assert recent.requests == 30  # recent fine buckets are still exact


async def test_window_store_drops_whole_rollups_only_when_they_alone_fill_it() -> None:
    drops = Drops()
    clock = Clock(NOW + 20 * 3600)
    store = MemoryWindowStore(
        TelemetryStatsSettings(memory_max_buckets=10), clock=clock, on_drop=drops
    )
    for hour in range(20):
        await store.add({WindowKey(*STABLE, int(NOW) + hour * 3600): {"req": 1}})
    assert len(store) <= 10
    assert drops.by_reason["memory_full"] > 0
    stats = await store.read(*STABLE, NOW, NOW + 20 * 3600)
    assert 0 < stats.requests < 20  # the oldest hours are gone, and counted as gone


# -- all of it, wired to Prometheus ---------------------------------------------------------
def _sample(registry: CollectorRegistry) -> Callable[..., float]:
    return lambda name, **labels: registry.get_sample_value(name, labels) or 0.0


async def test_every_embedded_bound_reports_its_overflow_in_prometheus(tmp_path: Path) -> None:
    settings = Settings(
        telemetry={
            "sqlite_path": tmp_path / "log.db",
            "spool_path": tmp_path / "spool.jsonl",
            "queue_size": 50,
            "flush_interval": 60,
        },
        stats={
            "index_cache_size": 40,
            "user_retry_memory_size": 30,
            "user_retry_backlog": 60,
            "memory_max_buckets": 4,
            "flush_interval": 60,
        },
    )
    registry = CollectorRegistry()
    metrics = MetricsRecorder.on(registry, settings.subjects, settings.languages)
    telemetry = Telemetry(settings, metrics, open_state(settings))
    sample = _sample(registry)
    async with telemetry:
        for i in range(100):
            ix = interaction(f"r{i}", f"question {i}", created_at=time.time() - 2 * i)
            for sink in telemetry.sinks:
                sink.record(ix)
        await telemetry.flush()
        assert len(telemetry.index) <= 40
        assert sample("tara_telemetry_dropped_total", sink="request_index", reason="evicted") > 0
        assert sample("tara_telemetry_dropped_total", sink="user_retries", reason="backlog_full")
        assert sample("tara_telemetry_dropped_total", sink="user_retries", reason="memory_full")
        assert sample("tara_telemetry_dropped_total", sink="window_stats", reason="fine_evicted")
        assert sample("tara_interactions_dropped_total", reason="queue_full") == 50
