"""The background writer against real stores: batching, shutdown, drops, outages, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from tara.telemetry.config import TelemetrySettings
from tara.telemetry.interactions import Interaction
from tara.telemetry.log import Feedback, InteractionLog
from tara.telemetry.log_backends import open_log
from tara.telemetry.log_postgres import PostgresInteractionLog
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.telemetry.log_writer import InteractionLogWriter, drop_reporter
from tara.telemetry.spool import Spool, encode
from tcp_relay import TcpRelay
from waiting import eventually

T0 = 1_700_000_000.0


def make(n: int, **changes: object) -> Interaction:
    ix = Interaction(
        request_id=f"req-{n:06d}",
        created_at=T0 + n,
        track="tara-tutor",
        segment="default",
        variant="canary",
        model="ft:tara",
        student_hash="cd" * 32,
        subject="chemistry",
        language="ta",
        grade="11",
        status=200,
        messages=[{"role": "user", "content": "அமிலம் என்றால் என்ன?"}],
        answer="அமிலம் ஒரு புரோட்டான் வழங்கி.",
    )
    return dataclasses.replace(ix, **changes)  # type: ignore[arg-type]


async def stored(log: InteractionLog) -> list[Interaction]:
    return [ix async for ix in log.iter_interactions()]


@pytest.fixture
async def sqlite_log(tmp_path: Path) -> AsyncIterator[SqliteInteractionLog]:
    log = SqliteInteractionLog(tmp_path / "ix.db", busy_timeout=0.05)
    await log.migrate()
    yield log
    await log.aclose()


class Drops:
    """An ``on_drop`` callable that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, reason: str, count: int) -> None:
        self.calls.append((reason, count))

    def total(self, reason: str) -> int:
        return sum(n for r, n in self.calls if r == reason)


async def test_records_are_written_in_batches(sqlite_log: SqliteInteractionLog) -> None:
    writer = InteractionLogWriter(sqlite_log, batch_size=10, flush_interval=0.05)
    for n in range(35):
        writer.record(make(n))
    writer.start()
    await writer.flush()
    assert (writer.stats.batches, writer.stats.written) == (4, 35)
    assert [ix.request_id for ix in await stored(sqlite_log)] == [
        make(n).request_id for n in range(35)
    ]
    # A lone record waits at most flush_interval for company, then is written.
    writer.record(make(99))
    await writer.flush()
    assert await sqlite_log.get("req-000099") == make(99)
    await writer.aclose(timeout=5)
    assert not writer.stats.dropped


async def test_a_full_batch_wakes_the_writer_and_a_partial_one_waits_for_the_interval(
    sqlite_log: SqliteInteractionLog,
) -> None:
    writer = InteractionLogWriter(sqlite_log, batch_size=10, flush_interval=3600)
    writer.start()
    for n in range(10):
        writer.record(make(n))
    await eventually(lambda: writer.stats.written == 10, "a full batch written at once")
    writer.record(make(10))
    await asyncio.sleep(0.2)
    assert (writer.stats.written, writer.queued) == (10, 1)  # waiting for company
    await writer.flush()  # a flush does not wait for the interval
    assert writer.stats.written == 11
    await writer.flush()  # nothing queued: returns at once
    await writer.aclose(timeout=5)
    assert len(await stored(sqlite_log)) == 11


async def test_close_flushes_everything_queued(sqlite_log: SqliteInteractionLog) -> None:
    drops = Drops()
    writer = InteractionLogWriter(sqlite_log, batch_size=100, flush_interval=3600, on_drop=drops)
    writer.start()
    for n in range(1000):
        writer.record(make(n))
    await writer.aclose(timeout=30)
    assert len(await stored(sqlite_log)) == 1000
    assert drops.calls == []
    writer.record(make(5000))  # a record after close is counted, not lost silently
    assert drops.calls == [("closed", 1)]


async def test_full_queue_drops_and_counts_without_raising(
    sqlite_log: SqliteInteractionLog,
) -> None:
    drops = Drops()
    writer = InteractionLogWriter(sqlite_log, queue_size=5, on_drop=drops)
    for n in range(8):
        writer.record(make(n))  # not started: nothing drains the queue
    assert writer.queued == 5
    assert drops.calls == [("queue_full", 1)] * 3
    await writer.aclose(timeout=10)
    assert [ix.request_id for ix in await stored(sqlite_log)] == [
        make(n).request_id for n in range(5)
    ]


async def test_drops_feed_a_prometheus_counter(sqlite_log: SqliteInteractionLog) -> None:
    registry = CollectorRegistry()
    counter = Counter(
        "tara_interactions_dropped", "Interactions not logged", ["reason"], registry=registry
    )
    writer = InteractionLogWriter(sqlite_log, queue_size=1, on_drop=counter)
    for n in range(4):
        writer.record(make(n))
    sample = registry.get_sample_value
    assert sample("tara_interactions_dropped_total", {"reason": "queue_full"}) == 3
    await writer.aclose(timeout=10)


def test_drop_reporter_survives_nothing_to_report_to() -> None:
    drop_reporter(None)("queue_full", 1)


async def test_broken_drop_counter_never_reaches_the_caller(
    sqlite_log: SqliteInteractionLog, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(reason: str, count: int) -> None:
        raise RuntimeError(reason)

    writer = InteractionLogWriter(sqlite_log, queue_size=1, on_drop=broken)
    writer.record(make(1))
    writer.record(make(2))
    assert writer.stats.dropped["queue_full"] == 1
    assert "drop counter failed" in caplog.text
    await writer.aclose(timeout=10)


async def test_metadata_capture_strips_text(sqlite_log: SqliteInteractionLog) -> None:
    writer = InteractionLogWriter(sqlite_log, capture="metadata", flush_interval=0.01)
    writer.start()
    writer.record(make(1))
    writer.record_feedback(Feedback("req-000001", 2, ["wrong"], 0.5, "மோசமான பதில்", T0 + 9))
    await writer.aclose(timeout=10)
    got = await sqlite_log.get("req-000001")
    assert got == make(
        1, messages=None, answer=None, rating=2, tags=["wrong"], relevance=0.5, rated_at=T0 + 9
    )


async def test_off_capture_logs_and_drops_nothing(sqlite_log: SqliteInteractionLog) -> None:
    drops = Drops()
    writer = InteractionLogWriter(sqlite_log, capture="off", queue_size=1, on_drop=drops)
    writer.start()
    for n in range(5):
        writer.record(make(n))
        writer.record_feedback(Feedback(f"req-{n:06d}", 5))
        writer.record_user_retry(f"req-{n:06d}")
    assert writer.queued == 0
    await writer.aclose(timeout=10)
    assert await stored(sqlite_log) == []
    assert drops.calls == []


async def test_feedback_joins_whether_it_comes_after_or_before(
    sqlite_log: SqliteInteractionLog,
) -> None:
    writer = InteractionLogWriter(sqlite_log, batch_size=1, flush_interval=0.01)
    writer.start()
    writer.record(make(1))
    writer.record_feedback(Feedback("req-000001", 5, ["cultural"], 0.9, None, T0 + 5))
    # Feedback that lands (e.g. on another replica) before its interaction is written.
    writer.record_feedback(Feedback("req-000002", 1, [], None, "புரியவில்லை", T0 + 6))
    writer.record(make(2))
    await writer.flush()
    one, two = await stored(sqlite_log)
    assert (one.rating, one.tags, one.relevance) == (5, ["cultural"], 0.9)
    assert (two.rating, two.comment) == (1, "புரியவில்லை")
    await writer.aclose(timeout=10)


POISON = "\udcff"
"""What an undecodable header byte becomes (``surrogateescape``); no store can encode it."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind_of_log(request: pytest.FixtureRequest, tmp_path: Path) -> InteractionLog:
    """A log of each kind, not migrated yet."""
    if request.param == "sqlite":
        return SqliteInteractionLog(tmp_path / "ix.db")
    dsn, schema = request.getfixturevalue("pg_schema")
    return PostgresInteractionLog(dsn, schema=schema)


@pytest.fixture
async def any_log(kind_of_log: InteractionLog) -> AsyncIterator[InteractionLog]:
    """A migrated log of each kind."""
    await kind_of_log.migrate()
    yield kind_of_log
    await kind_of_log.aclose()


async def test_a_poison_record_loses_no_neighbour(any_log: InteractionLog) -> None:
    drops = Drops()
    writer = InteractionLogWriter(
        any_log, batch_size=64, flush_interval=3600, retry_initial_backoff=0.0, on_drop=drops
    )
    rows = [make(n) for n in range(40)]
    rows[17] = make(17, subject=POISON)
    for row in rows:
        writer.record(row)
    for n in (3, 17, 30):
        writer.record_feedback(Feedback(f"req-{n:06d}", 4, ["wrong"], None, None, T0 + 50))
    writer.record_feedback(Feedback("req-000005", 2, [], None, f"bad {POISON}", T0 + 60))
    writer.start()
    await writer.flush()
    got = {ix.request_id: ix for ix in await stored(any_log)}
    assert sorted(got) == [f"req-{n:06d}" for n in range(40) if n != 17]
    assert (got["req-000003"].rating, got["req-000030"].rating) == (4, 4)
    assert got["req-000005"].rating is None  # its rating was the poison
    assert drops.calls == [("rejected", 1), ("rejected", 1)]
    await writer.aclose(timeout=10)


@contextlib.contextmanager
def sqlite_write_lock(path: Path) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as a long ``tara log purge`` would."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def fast_writer(log: InteractionLog, spool: Spool | None, drops: Drops) -> InteractionLogWriter:
    return InteractionLogWriter(
        log,
        retry_initial_backoff=0.01,
        retry_max_backoff=0.05,
        flush_interval=0.01,
        spool=spool,
        on_drop=drops,
    )


async def test_sqlite_outage_is_spooled_then_replayed_in_order(
    sqlite_log: SqliteInteractionLog, tmp_path: Path
) -> None:
    drops = Drops()
    spool = Spool(tmp_path / "spool" / "ix.jsonl", 1 << 20)
    writer = fast_writer(sqlite_log, spool, drops)
    writer.start()
    writer.record(make(0))
    await writer.flush()
    with sqlite_write_lock(sqlite_log.path):
        for n in range(1, 21):
            writer.record(make(n))  # the request path keeps going during the outage
        # A rating and then a second one for a row written during the outage: order matters.
        writer.record_feedback(Feedback("req-000004", 1, [], None, None, T0 + 30))
        writer.record_feedback(Feedback("req-000004", 5, [], None, None, T0 + 31))
        writer.record_user_retry("req-000007")  # found seconds later: only its flag
        await eventually(lambda: spool.records == 23, "everything spooled", within=20)
        assert not writer.up
        assert len(await stored(sqlite_log)) == 1
    await eventually(lambda: writer.up, "the spool replayed", within=20)
    rows = await stored(sqlite_log)
    assert [ix.request_id for ix in rows] == [make(n).request_id for n in range(21)]
    assert rows[4].rating == 5
    assert [ix.request_id for ix in rows if ix.user_retry] == ["req-000007"]
    assert drops.calls == []
    assert (spool.records, spool.size) == (0, 0)
    assert writer.stats.outages == 1
    await writer.aclose(timeout=10)


async def test_a_spool_left_behind_is_replayed_at_the_next_start(
    sqlite_log: SqliteInteractionLog, tmp_path: Path
) -> None:
    path = tmp_path / "spool.jsonl"
    drops = Drops()
    with sqlite_write_lock(sqlite_log.path):
        first = fast_writer(sqlite_log, Spool(path, 1 << 20), drops)
        first.start()
        for n in range(10):
            first.record(make(n))
        first.record_feedback(Feedback("req-000002", 3, ["unclear"], 0.5, "ঠিক", T0 + 9))
        await first.aclose(timeout=0.5)  # down at shut-down: everything stays in the spool
    assert len(path.read_bytes().splitlines()) == 11
    second = fast_writer(sqlite_log, Spool(path, 1 << 20), drops)
    second.start()
    await eventually(lambda: second.up, "the spool replayed", within=20)
    rows = await stored(sqlite_log)
    assert [ix.request_id for ix in rows] == [make(n).request_id for n in range(10)]
    assert (rows[2].rating, rows[2].tags, rows[2].comment) == (3, ["unclear"], "ঠিক")
    assert drops.calls == []
    assert second.stats.replayed == 11
    await second.aclose(timeout=10)
    assert path.read_bytes() == b""


async def test_only_what_overflows_the_spool_is_counted(
    sqlite_log: SqliteInteractionLog, tmp_path: Path
) -> None:
    drops = Drops()
    one = len(encode(make(0)))
    spool = Spool(tmp_path / "small.jsonl", one * 5 + one // 2)  # room for five records
    writer = fast_writer(sqlite_log, spool, drops)
    writer.start()
    with sqlite_write_lock(sqlite_log.path):
        for n in range(8):
            writer.record(make(n))
        await writer.flush()
        assert spool.records == 5
    await eventually(lambda: writer.up, "the spool replayed", within=20)
    assert len(await stored(sqlite_log)) == 5
    assert drops.total("spool_full") == 3
    await writer.aclose(timeout=10)


async def test_no_spool_counts_an_outage_as_spool_full(sqlite_log: SqliteInteractionLog) -> None:
    drops = Drops()
    writer = fast_writer(sqlite_log, None, drops)
    writer.start()
    with sqlite_write_lock(sqlite_log.path):
        for n in range(5):
            writer.record(make(n))
        await writer.flush()
    assert drops.calls == [("spool_full", 5)]
    writer.record(make(6))  # the store is back: the next batch just works
    await eventually(lambda: writer.up, "writing directly again", within=20)
    await writer.flush()
    assert [ix.request_id for ix in await stored(sqlite_log)] == ["req-000006"]
    await writer.aclose(timeout=10)


async def test_shutdown_timeout_counts_only_what_cannot_be_spooled(
    sqlite_log: SqliteInteractionLog, tmp_path: Path
) -> None:
    drops = Drops()
    writer = InteractionLogWriter(
        sqlite_log, batch_size=4, flush_interval=3600, spool=None, on_drop=drops
    )
    writer.start()
    with sqlite_write_lock(sqlite_log.path):
        for n in range(10):
            writer.record(make(n))
        await writer.aclose(timeout=0.01)
    assert drops.total("shutdown_timeout") + drops.total("spool_full") == 10


@pytest.mark.postgres
async def test_postgres_outage_is_spooled_then_replayed(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    dsn, schema = pg_schema
    direct = PostgresInteractionLog(dsn, schema=schema)
    await direct.migrate()
    proxy = TcpRelay(5432)
    await proxy.start()
    via_proxy = PostgresInteractionLog(
        f"postgresql://postgres@127.0.0.1:{proxy.port}/test",
        schema=schema,
        connect_timeout=2,
        command_timeout=2,
    )
    drops = Drops()
    spool = Spool(tmp_path / "pg.jsonl", 1 << 20)
    writer = fast_writer(via_proxy, spool, drops)
    writer.start()
    try:
        writer.record(make(1))
        await writer.flush()
        await proxy.stop()  # the database goes away, pooled connection and all
        for n in range(2, 12):
            writer.record(make(n))
        writer.record_feedback(Feedback("req-000011", 2, [], None, None, T0 + 20))
        await eventually(lambda: spool.records == 11, "everything spooled", within=20)
        await proxy.start()  # and comes back on the same address
        await eventually(lambda: writer.up, "the spool replayed", within=20)
        rows = await stored(direct)
        assert [ix.request_id for ix in rows] == [make(n).request_id for n in range(1, 12)]
        assert rows[-1].rating == 2
        assert drops.calls == []
    finally:
        await writer.aclose(timeout=10)
        await via_proxy.aclose()
        await proxy.stop()
        await direct.aclose()


@pytest.mark.postgres
async def test_postgres_down_at_start_is_migrated_and_written_once_back(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    _, schema = pg_schema
    proxy = TcpRelay(5432)  # not started: nothing listens yet
    settings = TelemetrySettings(
        pg_schema=schema,
        retry_initial_backoff=0.01,
        retry_max_backoff=0.05,
        flush_interval=0.01,
        spool_path=tmp_path / "spool.jsonl",
    )
    log = open_log(f"postgresql://postgres@127.0.0.1:{proxy.port}/test", settings)
    drops = Drops()
    writer = InteractionLogWriter.from_settings(log, settings, on_drop=drops)
    writer.start()
    try:
        for n in range(3):
            writer.record(make(n))
        await writer.flush()
        assert (writer.up, writer.spool.records) == (False, 3)
        await proxy.start()
        await eventually(lambda: writer.up, "migrated and replayed", within=20)
        assert [ix.request_id for ix in await stored(log)] == [make(n).request_id for n in range(3)]
        assert drops.calls == []
    finally:
        await writer.aclose(timeout=5)
        await log.aclose()
        await proxy.stop()


def test_open_log_picks_the_backend_from_the_url(tmp_path: Path) -> None:
    settings = TelemetrySettings(sqlite_path=tmp_path / "default.db")
    default = open_log(None, settings)
    assert isinstance(default, SqliteInteractionLog)
    assert default.path == tmp_path / "default.db"
    explicit = open_log(f"sqlite:///{tmp_path}/other.db", settings)
    assert isinstance(explicit, SqliteInteractionLog)
    assert explicit.path == tmp_path / "other.db"
    pg = open_log("postgresql://postgres@127.0.0.1/test", settings)
    assert isinstance(pg, PostgresInteractionLog)
    with pytest.raises(ValueError, match="mysql"):
        open_log("mysql://x", settings)
