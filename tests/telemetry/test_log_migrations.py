"""Schema migrations: ordered, recorded in ``schema_version``, idempotent, on both dialects."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from tara.telemetry.log_postgres import PostgresInteractionLog
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.telemetry.migrations import Migration, MigrationError, pending
from tara.telemetry.migrations import postgres as pg_migrations
from tara.telemetry.migrations import sqlite as sqlite_migrations

ONE = Migration(1, "one", ())
TWO = Migration(2, "two", ())
THREE = Migration(3, "three", ())


@pytest.mark.parametrize(
    ("migrations", "applied", "expected"),
    [
        ((ONE, TWO, THREE), [], [1, 2, 3]),
        ((ONE, TWO, THREE), [1], [2, 3]),
        ((ONE, TWO, THREE), [1, 3], [2]),
        ((ONE, TWO, THREE), [1, 2, 3], []),
        ((), [], []),
    ],
)
def test_pending_lists_missing_steps_in_order(
    migrations: Sequence[Migration], applied: list[int], expected: list[int]
) -> None:
    assert [m.version for m in pending(migrations, applied)] == expected


@pytest.mark.parametrize("migrations", [(TWO, ONE), (ONE, ONE), (Migration(0, "zero", ()),)])
def test_pending_rejects_a_malformed_list(migrations: Sequence[Migration]) -> None:
    with pytest.raises(MigrationError, match="ascending"):
        pending(migrations, [])


def test_pending_refuses_a_database_from_a_newer_release() -> None:
    with pytest.raises(MigrationError, match=r"\[4\] unknown"):
        pending((ONE, TWO), [1, 2, 4])


def test_both_dialects_have_the_same_steps() -> None:
    def steps(ms: Sequence[Migration]) -> list[tuple[int, str]]:
        return [(m.version, m.name) for m in ms]

    assert steps(sqlite_migrations.MIGRATIONS) == steps(pg_migrations.MIGRATIONS)


RELEASED = [(m.version, m.name) for m in sqlite_migrations.MIGRATIONS]
NEXT = RELEASED[-1][0] + 1
SQLITE_NEXT = Migration(NEXT, "extra_column", ("ALTER TABLE interactions ADD COLUMN extra TEXT",))
PG_NEXT = Migration(NEXT, "extra_column", ("ALTER TABLE interactions ADD COLUMN extra text",))


def _sqlite_state(path: Path) -> tuple[list[tuple[int, str]], set[str], set[str]]:
    with sqlite3.connect(path) as db:
        versions = db.execute("SELECT version, name FROM schema_version ORDER BY version")
        rows = [(v, n) for v, n in versions]
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        columns = {r[1] for r in db.execute("PRAGMA table_info(interactions)")}
    db.close()
    return rows, indexes, columns


EXPECTED_INDEXES = {
    "interactions_created",
    "interactions_rollout",
    "interactions_rating",
    "interactions_language_subject",
}


async def test_sqlite_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "ix.db"
    first = SqliteInteractionLog(path)
    await first.migrate()
    await first.migrate()
    await first.aclose()
    versions, indexes, columns = _sqlite_state(path)
    assert versions == RELEASED
    assert indexes >= EXPECTED_INDEXES
    assert "topic" in columns
    assert "extra" not in columns

    upgraded = SqliteInteractionLog(path, migrations=(*sqlite_migrations.MIGRATIONS, SQLITE_NEXT))
    await upgraded.migrate()
    await upgraded.migrate()
    await upgraded.aclose()
    versions, _, columns = _sqlite_state(path)
    assert versions == [*RELEASED, (NEXT, "extra_column")]
    assert "extra" in columns

    older = SqliteInteractionLog(path)  # the previous release meets a newer database
    with pytest.raises(MigrationError, match="unknown to this release"):
        await older.migrate()
    await older.aclose()


async def test_sqlite_failed_step_leaves_the_version_unrecorded(tmp_path: Path) -> None:
    broken = Migration(NEXT, "broken", ("ALTER TABLE interactions ADD COLUMN x", "SELECT nope"))
    log = SqliteInteractionLog(
        tmp_path / "ix.db", migrations=(*sqlite_migrations.MIGRATIONS, broken)
    )
    with pytest.raises(sqlite3.OperationalError):
        await log.migrate()
    await log.aclose()
    versions, _, columns = _sqlite_state(tmp_path / "ix.db")
    assert versions == RELEASED
    assert "x" not in columns  # the half-done step was rolled back


@pytest.mark.postgres
async def test_postgres_migrations_are_versioned_idempotent_and_safe_in_parallel(
    pg_schema: tuple[str, str],
) -> None:
    dsn, schema = pg_schema
    logs = [PostgresInteractionLog(dsn, schema=schema, min_size=1, max_size=1) for _ in range(3)]
    await asyncio.gather(*(log.migrate() for log in logs))  # replicas starting together
    await logs[0].migrate()
    upgraded = PostgresInteractionLog(
        dsn, schema=schema, migrations=(*pg_migrations.MIGRATIONS, PG_NEXT)
    )
    await upgraded.migrate()
    await upgraded.migrate()
    with pytest.raises(MigrationError, match="unknown to this release"):
        await logs[1].migrate()
    for log in [*logs, upgraded]:
        await log.aclose()

    conn = await asyncpg.connect(dsn)
    try:
        versions = await conn.fetch(
            f'SELECT version, name FROM "{schema}".schema_version ORDER BY version'
        )
        indexes = await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)
        types = await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = $1 AND table_name = 'interactions'",
            schema,
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in versions] == [*RELEASED, (NEXT, "extra_column")]
    assert {r[0] for r in indexes} >= EXPECTED_INDEXES
    column_types = dict(types)
    assert column_types["messages"] == "jsonb"
    assert column_types["tags"] == "jsonb"
    assert column_types["extra"] == "text"
    assert column_types["topic"] == "text"


async def test_sqlite_a_first_release_log_gains_the_topic_column_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ix.db"
    old = SqliteInteractionLog(path, migrations=sqlite_migrations.MIGRATIONS[:1])
    await old.migrate()
    await old.aclose()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO interactions (request_id, created_at, track, segment, variant, model,"
            " status, rating) VALUES ('r1', 1.0, 't', 'all', 'stable', 'm', 200, 5)"
        )
    db.close()
    log = SqliteInteractionLog(path)
    await log.migrate()
    try:
        ix = await log.get("r1")
        assert ix is not None
        assert (ix.rating, ix.topic) == (5, None)
    finally:
        await log.aclose()


@pytest.mark.postgres
async def test_postgres_migrate_creates_a_missing_schema(pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    fresh = f"{schema}_new"
    log = PostgresInteractionLog(dsn, schema=fresh)
    try:
        await log.migrate()
        assert await log.get("nothing") is None
    finally:
        await log.aclose()
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')
        await conn.close()
