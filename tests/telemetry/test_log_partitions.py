"""The PostgreSQL interaction log, partitioned by month: the plan, and the real database.

A log written before partitioning is migrated in place (its rows kept), new
months get partitions ahead of time, rows land in their month, and purge
drops whole old partitions and deletes the rest row by row. SQLite keeps one
table.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tara.gateway.chat import new_request_id
from tara.telemetry import log_partitions as parts
from tara.telemetry.interactions import Interaction
from tara.telemetry.log import Feedback
from tara.telemetry.log_postgres import PostgresInteractionLog
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.telemetry.migrations import postgres as pg_migrations


def ts(year: int, month: int, day: int = 1) -> float:
    return datetime(year, month, day, tzinfo=UTC).timestamp()


def request_id(t: float) -> str:
    """A gateway-style id of a request arriving at ``t``."""
    return parts.id_bound(t) + secrets.token_hex(10)


def test_a_gateway_request_id_falls_in_the_range_of_its_month() -> None:
    rid = new_request_id()
    now = datetime.now(UTC).timestamp()
    month = parts.month_partition(parts.month_start(now))
    assert month.lower <= rid < month.upper


def test_months_to_create_run_from_now_to_the_months_ahead_across_a_year_end() -> None:
    made = parts.months_to_create(None, ts(2026, 11, 20), ahead=3)
    assert [m.name for m in made] == [
        "interactions_y2026m11",
        "interactions_y2026m12",
        "interactions_y2027m01",
        "interactions_y2027m02",
    ]
    assert made[0].upper == made[1].lower
    assert made[0].lower == parts.id_bound(ts(2026, 11))


def test_months_to_create_skip_what_exists_and_fill_a_gap() -> None:
    existing = parts.month_partition(datetime(2027, 1, 1, tzinfo=UTC)).upper
    assert [m.name for m in parts.months_to_create(existing, ts(2026, 12, 5), 1)] == []
    stale = parts.id_bound(ts(2026, 9))  # nothing made since August: September on
    names = [m.name for m in parts.months_to_create(stale, ts(2026, 11, 5), 1)]
    assert names == [
        "interactions_y2026m09",
        "interactions_y2026m10",
        "interactions_y2026m11",
        "interactions_y2026m12",
    ]


@pytest.mark.parametrize(
    ("expr", "upper"),
    [
        ("FOR VALUES FROM ('019a0000aaaa') TO ('019b0000bbbb')", "019b0000bbbb"),
        ("FOR VALUES FROM (MINVALUE) TO ('019a0000aaaa')", "019a0000aaaa"),
        ("DEFAULT", None),
        ("FOR VALUES FROM ('a') TO (MAXVALUE)", None),
    ],
)
def test_upper_bound_reads_what_postgres_reports(expr: str, upper: str | None) -> None:
    assert parts.upper_bound(expr) == upper


def test_droppable_names_partitions_wholly_before_the_cut_off_never_the_default() -> None:
    uppers = {
        "interactions_legacy": parts.id_bound(ts(2026, 9)),
        "interactions_y2026m09": parts.id_bound(ts(2026, 10)),
        "interactions_y2026m10": parts.id_bound(ts(2026, 11)),
        "interactions_default": None,
    }
    assert parts.droppable(uppers, ts(2026, 10, 15)) == [
        "interactions_legacy",
        "interactions_y2026m09",
    ]


# -- the real PostgreSQL --------------------------------------------------------------------
def row(rid: str, created_at: float, **changes: Any) -> Interaction:
    fields: dict[str, Any] = {
        "request_id": rid,
        "created_at": created_at,
        "track": "tara-tutor",
        "segment": "all",
        "variant": "stable",
        "model": "tara-stable",
        "student_hash": "s1",
        "subject": "math",
        "language": "hi",
        "grade": "7",
        "status": 200,
        "messages": [{"role": "user", "content": "7 x 8?"}],
        "answer": "56",
    }
    fields.update(changes)
    return Interaction(**fields)


async def where_rows_live(dsn: str, schema: str) -> dict[str, str]:
    """Request id → the partition holding it."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
    try:
        rows = await conn.fetch("SELECT request_id, tableoid::regclass::text FROM interactions")
    finally:
        await conn.close()
    return {r[0]: r[1].strip('"').rpartition(".")[2].strip('"') for r in rows}


NOW = time.time()
"""The migration splits at the real month it runs in, so these tests live in real time."""
OLD = NOW - 180 * 86_400
M0 = parts.month_start(NOW)
M1 = parts.next_month(M0)
M2 = parts.next_month(M1)
M3 = parts.next_month(M2)


def day(month: datetime, d: int) -> float:
    return month.replace(day=d).timestamp()


def home(month: datetime) -> str:
    return parts.month_partition(month).name


@pytest.mark.postgres
async def test_an_unpartitioned_log_is_partitioned_in_place_and_keeps_every_row(
    pg_schema: tuple[str, str],
) -> None:
    dsn, schema = pg_schema
    before = PostgresInteractionLog(dsn, schema=schema, migrations=pg_migrations.MIGRATIONS[:2])
    await before.migrate()
    old_id, this_month_id = request_id(OLD), request_id(NOW)
    await before.write_batch(
        [row(old_id, OLD), row(this_month_id, NOW), row("imported-7", OLD, rating=4)]
    )
    await before.aclose()

    log = PostgresInteractionLog(dsn, schema=schema, partitions_ahead=2)
    try:
        await log.migrate()
        for rid in (old_id, this_month_id, "imported-7"):
            assert await log.get(rid) is not None, rid
        assert (await log.get("imported-7")).rating == 4  # type: ignore[union-attr]
        homes = await where_rows_live(dsn, schema)
        assert homes == {
            old_id: "interactions_legacy",
            this_month_id: home(M0),
            "imported-7": "interactions_default",
        }
        # Inserts and upserts into the months ahead land in their partitions.
        next_month = request_id(day(M1, 3))
        await log.write_batch([row(next_month, day(M1, 3))])
        await log.apply_feedback(Feedback(next_month, 5, ["cultural"], None, None, day(M1, 4)))
        await log.write_batch([row(next_month, day(M1, 3), user_retry=True)])
        stored = await log.get(next_month)
        assert stored is not None
        assert (stored.rating, stored.user_retry) == (5, True)
        assert (await where_rows_live(dsn, schema))[next_month] == home(M1)
        assert [ix.request_id async for ix in log.iter_interactions()] == [
            old_id,
            "imported-7",
            this_month_id,
            next_month,
        ]
    finally:
        await log.aclose()


@pytest.mark.postgres
async def test_a_month_without_its_partition_waits_in_the_default_one_and_moves(
    pg_schema: tuple[str, str],
) -> None:
    dsn, schema = pg_schema
    clock = [NOW]
    log = PostgresInteractionLog(dsn, schema=schema, clock=lambda: clock[0], partitions_ahead=1)
    try:
        await log.migrate()
        far = request_id(day(M3, 2))  # beyond the month made ahead
        await log.write_batch([row(far, day(M3, 2))])
        assert (await where_rows_live(dsn, schema))[far] == "interactions_default"
        clock[0] = day(M2, 20)
        await log.migrate()  # a replica starting two months later: the months up to M3
        assert (await where_rows_live(dsn, schema))[far] == home(M3)
        assert await log.get(far) is not None
    finally:
        await log.aclose()


@pytest.mark.postgres
async def test_purge_drops_whole_old_months_and_deletes_the_rest(
    pg_schema: tuple[str, str],
) -> None:
    dsn, schema = pg_schema
    now, m0, m1, m2 = NOW, M0, M1, M2
    before = PostgresInteractionLog(dsn, schema=schema, migrations=pg_migrations.MIGRATIONS[:2])
    await before.migrate()
    legacy = [request_id(now - 86_400 * (40 + i)) for i in range(3)]
    await before.write_batch([row(rid, now - 86_400 * (40 + i)) for i, rid in enumerate(legacy)])
    await before.aclose()
    log = PostgresInteractionLog(dsn, schema=schema, partitions_ahead=3)
    try:
        await log.migrate()
        this_month = request_id(day(m0, 1))
        late = request_id(day(m1, 3))  # rated before it was written: created_at is late
        early, kept = request_id(day(m2, 2)), request_id(day(m2, 20))
        await log.write_batch([row(this_month, day(m0, 1))])
        await log.apply_feedback(Feedback(late, 3, [], None, None, day(m2, 25)))
        await log.write_batch([row(early, day(m2, 2)), row(kept, day(m2, 20))])
        await log.write_batch([row("odd-id", day(m0, 2))])

        # legacy (3) and this month (1) whole; odd-id and early row by row.
        assert await log.purge(day(m2, 10)) == 3 + 1 + 1 + 1
        left = await where_rows_live(dsn, schema)
        assert left == {late: home(m1), kept: home(m2)}
        conn = await asyncpg.connect(dsn)
        try:
            tables = {
                r[0]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
                )
            }
        finally:
            await conn.close()
        assert parts.LEGACY not in tables
        assert home(m0) not in tables  # dropped whole
        assert {home(m1), home(m2)} <= tables
        assert await log.purge(day(m2, 10)) == 0
    finally:
        await log.aclose()


async def test_sqlite_keeps_one_table(tmp_path: Path) -> None:
    log = SqliteInteractionLog(tmp_path / "ix.db")
    await log.migrate()
    await log.write_batch([row(request_id(NOW), NOW)])
    assert await log.purge(NOW + 1) == 1
    await log.aclose()
    with sqlite3.connect(tmp_path / "ix.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert {t for t in tables if t.startswith("interactions")} == {"interactions"}
