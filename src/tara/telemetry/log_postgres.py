"""The interaction log in PostgreSQL (asyncpg): shared by every gateway replica.

Chosen by measurement (``bench/bench_log.py``, 20k rows in batches of 500):
a batch goes by binary ``COPY`` into a session-local staging table and then
one ``INSERT ... SELECT ... ON CONFLICT`` upsert, which beat row-by-row
``executemany`` by 20-30% with either driver; asyncpg and psycopg 3 were level
on each strategy, and asyncpg is already a dependency with a built-in pool.
The pool is created on first use, so a database that is down at start-up
only fails calls (which the writer retries) instead of the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import orjson

from tara.telemetry import log_partitions as partitions
from tara.telemetry.interactions import Interaction
from tara.telemetry.log import (
    COLUMNS,
    Feedback,
    InteractionFilter,
    latest_per_request,
    upsert_sql,
    where_sql,
)
from tara.telemetry.migrations import Migration, pending
from tara.telemetry.migrations.postgres import MIGRATIONS, VERSION_TABLE

# Identifiers in SQL text come from constants only; values are always parameters.
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM interactions"  # noqa: S608
_UPSERT_TAIL = upsert_sql("").partition(" ON CONFLICT ")[2]
# Temporary, so per session: concurrent batches on other connections never mix.
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS interactions_stage"
    " (LIKE interactions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_FROM_STAGE = (
    f"INSERT INTO interactions ({', '.join(COLUMNS)})"  # noqa: S608
    f" SELECT {', '.join(COLUMNS)} FROM interactions_stage ON CONFLICT {_UPSERT_TAIL}"
)
_FEEDBACK = """
INSERT INTO interactions (request_id, recorded, created_at, track, segment, variant, model,
                          status, rating, tags, relevance, comment, rated_at)
VALUES ($1, false, $2, '', '', '', '', 0, $3, $4, $5, $6, $2)
ON CONFLICT (request_id) DO UPDATE SET
    rating = excluded.rating, tags = excluded.tags, relevance = excluded.relevance,
    comment = excluded.comment, rated_at = excluded.rated_at
RETURNING recorded
"""
_FEEDBACK_MANY = """
INSERT INTO interactions (request_id, recorded, created_at, track, segment, variant, model,
                          status, rating, tags, relevance, comment, rated_at)
SELECT f.request_id, false, f.rated_at, '', '', '', '', 0, f.rating, f.tags::jsonb, f.relevance,
       f.comment, f.rated_at
FROM unnest($1::text[], $2::float8[], $3::smallint[], $4::text[], $5::float8[], $6::text[])
     AS f(request_id, rated_at, rating, tags, relevance, comment)
ON CONFLICT (request_id) DO UPDATE SET
    rating = excluded.rating, tags = excluded.tags, relevance = excluded.relevance,
    comment = excluded.comment, rated_at = excluded.rated_at
"""


def clean_text(value: str | None) -> str | None:
    """``value`` without NUL characters, which PostgreSQL text and jsonb reject."""
    if value is not None and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): _clean_json(v) for k, v in value.items()}
    return value


def encode_json(value: Any) -> str:
    """jsonb text for ``value``; NULs are replaced rather than failing the whole batch."""
    data = orjson.dumps(value)
    if data.find(b"\\u0000") >= 0:  # rare: only then pay for the recursive copy
        data = orjson.dumps(_clean_json(value))
    return data.decode()


_TEXT = frozenset(
    {"request_id", "track", "segment", "variant", "model", "student_hash", "subject"}
    | {"language", "grade", "topic", "error_class", "answer", "comment"}
)
"""Text columns, cleaned of NULs before they are sent."""


def to_row(ix: Interaction) -> tuple[Any, ...]:
    """asyncpg parameters for one interaction, in :data:`COLUMNS` order."""
    return tuple(
        clean_text(getattr(ix, name)) if name in _TEXT else getattr(ix, name) for name in COLUMNS
    )


def _jsonb_out(value: Any) -> bytes:
    return b"\x01" + encode_json(value).encode()  # binary jsonb: version 1, then text


def _jsonb_in(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Binary, because COPY FROM in binary format (what asyncpg sends) needs it.
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_out, decoder=_jsonb_in, schema="pg_catalog", format="binary"
    )


class PostgresInteractionLog:
    """:class:`~tara.telemetry.log.InteractionLog` in PostgreSQL schema ``schema``."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout: float = 5.0,
        command_timeout: float = 60.0,
        migrations: Sequence[Migration] = MIGRATIONS,
        partitions_ahead: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.partitions_ahead = partitions_ahead
        """Months of partitions kept ready past the current one (see ``log_partitions``)."""
        self._clock = clock
        self._pool_args: dict[str, Any] = {
            "min_size": min_size,
            "max_size": max(max_size, min_size),
            "timeout": connect_timeout,
            "command_timeout": command_timeout,
            "server_settings": {"search_path": f'"{schema}"'},
            "init": _init_connection,
        }
        self._migrations = migrations
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def _connected(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(self.dsn, **self._pool_args)
        return self._pool

    async def migrate(self) -> None:
        """Create the schema if needed and apply pending migrations under an advisory lock."""
        pool = await self._connected()
        async with pool.acquire() as conn:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema
            )
            if not exists:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            while True:
                async with conn.transaction():
                    # Replicas starting together take turns; the loser sees the
                    # winner's versions once it gets the lock.
                    lock = f"tara-interactions:{self.schema}"
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
                    await conn.execute(VERSION_TABLE)
                    applied = [r[0] for r in await conn.fetch("SELECT version FROM schema_version")]
                    todo = pending(self._migrations, applied)
                    if not todo:
                        await partitions.ensure(conn, self._clock(), self.partitions_ahead)
                        return
                    step = todo[0]
                    for statement in step.statements:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_version (version, name, applied_at)"
                        " VALUES ($1, $2, $3)",
                        step.version,
                        step.name,
                        time.time(),
                    )

    async def ping(self) -> None:
        """Raise unless the database answers (connecting first if the pool is not up yet)."""
        pool = await self._connected()
        await pool.fetchval("SELECT 1")

    async def write_batch(self, interactions: list[Interaction]) -> None:
        """Upsert the batch in one transaction: ``COPY`` to a staging table, then upsert."""
        if not interactions:
            return
        rows = [to_row(ix) for ix in latest_per_request(interactions)]
        pool = await self._connected()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGE)
            await conn.copy_records_to_table("interactions_stage", records=rows, columns=COLUMNS)
            await conn.execute(_FROM_STAGE)

    async def apply_feedback(self, feedback: Feedback) -> bool:
        """Store feedback; ``False`` if the interaction is not written yet (kept for it)."""
        fb = feedback
        pool = await self._connected()
        recorded: bool = await pool.fetchval(
            _FEEDBACK, fb.request_id, fb.rated_at, fb.rating, fb.tags, fb.relevance,
            clean_text(fb.comment),
        )  # fmt: skip
        return recorded

    async def apply_feedback_batch(self, feedback: Sequence[Feedback]) -> None:
        """Store feedback in one statement; for a request rated twice, its last rating.

        One statement cannot update a row twice, and each rating replaces the
        one before, so keeping the last per request is what applying them in
        order would leave.
        """
        last = {fb.request_id: fb for fb in feedback}
        if not last:
            return
        pool = await self._connected()
        await pool.execute(
            _FEEDBACK_MANY,
            list(last),
            [fb.rated_at for fb in last.values()],
            [fb.rating for fb in last.values()],
            [encode_json(fb.tags) for fb in last.values()],  # a list of lists is 2-D to asyncpg
            [fb.relevance for fb in last.values()],
            [clean_text(fb.comment) for fb in last.values()],
        )

    async def mark_user_retries(self, request_ids: Sequence[str]) -> None:
        """Flag the stored interactions with these ids as user retries, in one statement."""
        if not request_ids:
            return
        pool = await self._connected()
        await pool.execute(
            "UPDATE interactions SET user_retry = true WHERE request_id = ANY($1::text[])",
            list(request_ids),
        )

    async def get(self, request_id: str) -> Interaction | None:
        """The stored interaction, or ``None``."""
        pool = await self._connected()
        row = await pool.fetchrow(f"{_SELECT} WHERE request_id = $1 AND recorded", request_id)
        return None if row is None else Interaction(**dict(row.items()))

    async def iter_interactions(
        self, where: InteractionFilter | None = None, *, batch_size: int = 1000
    ) -> AsyncIterator[Interaction]:
        """Stream matching interactions, ``batch_size`` rows per query."""
        where = where or InteractionFilter()
        pool = await self._connected()
        after: tuple[float, str] | None = None
        while True:
            clause, params = where_sql(where, after, lambda n: f"${n}")
            sql = (
                f"{_SELECT} WHERE {clause} ORDER BY created_at, request_id LIMIT ${len(params) + 1}"
            )
            page = await pool.fetch(sql, *params, batch_size)
            for row in page:
                yield Interaction(**dict(row.items()))
            if len(page) < batch_size:
                return
            after = (page[-1]["created_at"], page[-1]["request_id"])

    async def purge(self, older_than: float) -> int:
        """Delete rows created before ``older_than``: whole month partitions, then row by row.

        Also creates the partitions ahead, so a daily purge keeps them ready.
        """
        pool = await self._connected()
        async with pool.acquire() as conn:
            dropped = await partitions.drop_older(conn, older_than)
            status: str = await conn.execute(
                "DELETE FROM interactions WHERE created_at < $1", older_than
            )
            async with conn.transaction():
                lock = f"tara-interactions:{self.schema}"
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
                await partitions.ensure(conn, self._clock(), self.partitions_ahead)
        return dropped + int(status.rsplit(" ", 1)[-1])

    async def aclose(self) -> None:
        """Close the pool, waiting briefly for borrowed connections."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()
