"""The interaction log in an embedded SQLite file: the default for one process.

All database work runs on one dedicated worker thread that owns the single
connection, so the event loop never blocks on disk and sqlite3's
one-thread-per-connection rule holds without locks. WAL mode lets other
processes (``tara log purge``, the fine-tuning pipeline) read while we write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from tara.telemetry.interactions import Interaction
from tara.telemetry.log import (
    COLUMNS,
    FEEDBACK_COLUMNS,
    Feedback,
    InteractionFilter,
    latest_per_request,
    upsert_sql,
    where_sql,
)
from tara.telemetry.migrations import Migration, pending
from tara.telemetry.migrations.sqlite import MIGRATIONS, VERSION_TABLE

T = TypeVar("T")

_PURGE_CHUNK = 5000
"""Rows deleted per transaction, so a big purge never holds the write lock for long."""
CACHE_KIB = 4_096
"""Page cache of the writer's connection (SQLite's default is 2 MiB). It stays resident,
so it counts against the embedded gateway's 150 MiB (it was 16 MiB); batches append at the
end of every index, so their hot pages fit."""
CHECKPOINT_PAGES = 10_000
"""WAL pages (~40 MiB) before an automatic checkpoint (SQLite's default is 1,000)."""

# sqlite3 binds int, float and str directly but sends every other value, None included,
# through its adapter registry first; with no adapter for None, each lookup then fails twice
# and builds and clears an AttributeError (~3,300 instructions, 8 of them per typical row:
# 2.5% of a request). A registered adapter is found at once; this one is C code that maps
# None to None, which binds as NULL as before. The registry is process-wide; for every
# other user of sqlite3 the mapping changes nothing.
_NULL: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NULL.get)

# Identifiers in SQL text come from constants only; values are always parameters.
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM interactions"  # noqa: S608
_UPSERT = upsert_sql(", ".join("?" for _ in COLUMNS))
_NO_FEEDBACK = {name: "NULL" for name in FEEDBACK_COLUMNS} | {"tags": "'[]'"}
_UPSERT_UNRATED = upsert_sql(", ".join(_NO_FEEDBACK.get(name, "?") for name in COLUMNS))
"""The upsert of a record without feedback (every record the gateway makes): its feedback
columns are literals, so 5 of a row's 27 parameters, 4 of them None, are not bound."""
_FEEDBACK = """
INSERT INTO interactions (request_id, recorded, created_at, track, segment, variant, model,
                          status, rating, tags, relevance, comment, rated_at)
VALUES (?, 0, ?, '', '', '', '', 0, ?, ?, ?, ?, ?)
ON CONFLICT (request_id) DO UPDATE SET
    rating = excluded.rating, tags = excluded.tags, relevance = excluded.relevance,
    comment = excluded.comment, rated_at = excluded.rated_at
RETURNING recorded
"""


_MARK_USER_RETRY = "UPDATE interactions SET user_retry = 1 WHERE request_id = ?"


def _feedback_params(fb: Feedback) -> tuple[Any, ...]:
    tags = orjson.dumps(fb.tags).decode()
    return (fb.request_id, fb.rated_at, fb.rating, tags, fb.relevance, fb.comment, fb.rated_at)


def scan_index(where: InteractionFilter) -> str:
    """The index a filtered scan reads, in ``(created_at, request_id)`` order.

    SQLite's planner, lacking statistics, may pick an index on the filter
    columns that is not in scan order and then sort every match for each
    page; naming the index keeps every page a short range read.
    """
    if where.language is not None and where.subject is not None:
        return "interactions_language_subject"
    if where.track is not None and where.segment is not None and where.variant is not None:
        return "interactions_rollout"
    return "interactions_created"


def to_row(ix: Interaction) -> tuple[Any, ...]:
    """SQLite parameters for one interaction, in :data:`COLUMNS` order."""
    return (
        *request_row(ix),
        ix.rating,
        orjson.dumps(ix.tags).decode() if ix.tags else "[]",
        ix.relevance,
        ix.comment,
        ix.rated_at,
    )


def unrated(ix: Interaction) -> bool:
    """Whether the record carries no feedback (its row is :func:`request_row`)."""
    return (
        ix.rated_at is None
        and ix.rating is None
        and not ix.tags
        and ix.relevance is None
        and ix.comment is None
    )


def request_row(ix: Interaction) -> tuple[Any, ...]:
    """SQLite parameters for the request columns of an interaction (those before the feedback)."""
    return (
        ix.request_id,
        ix.created_at,
        ix.track,
        ix.segment,
        ix.variant,
        ix.model,
        ix.student_hash,
        ix.subject,
        ix.language,
        ix.grade,
        ix.status,
        ix.topic,
        ix.error_class,
        ix.latency_s,
        ix.ttft_s,
        ix.prompt_tokens,
        ix.completion_tokens,
        int(ix.user_retry),
        int(ix.fallback),
        int(ix.stream),
        None if ix.messages is None else orjson.dumps(ix.messages).decode(),
        ix.answer,
    )


def from_row(row: Sequence[Any]) -> Interaction:
    """The interaction a stored row (selected in :data:`COLUMNS` order) describes."""
    values = dict(zip(COLUMNS, row, strict=True))
    for name in ("user_retry", "fallback", "stream"):
        values[name] = bool(values[name])
    if values["messages"] is not None:
        values["messages"] = orjson.loads(values["messages"])
    values["tags"] = orjson.loads(values["tags"])
    return Interaction(**values)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so two writers wait on
    # busy_timeout instead of failing half-way with SQLITE_BUSY.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteInteractionLog:
    """:class:`~tara.telemetry.log.InteractionLog` in a SQLite file (created on first use)."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._migrations = migrations
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tara-sqlite")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _db(self) -> sqlite3.Connection:
        """The worker thread's connection, opened on first use."""
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives a process crash; only a power cut
                # can lose the last commits, which telemetry can afford.
                conn.execute("PRAGMA synchronous=NORMAL")
                # Request ids are random, so every batch dirties pages all over
                # the primary-key index: a bigger cache saves re-reading them,
                # rarer checkpoints copy a page rewritten by many commits once.
                # Together ~30% less writer CPU per row at 100k+ rows.
                conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    # -- worker-thread bodies ---------------------------------------------
    def _migrate(self) -> None:
        db = self._db()
        db.execute(VERSION_TABLE)
        while True:
            with _transaction(db):
                applied = [row[0] for row in db.execute("SELECT version FROM schema_version")]
                todo = pending(self._migrations, applied)
                if not todo:
                    return
                step = todo[0]
                for statement in step.statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (step.version, step.name, time.time()),
                )

    def _ping(self) -> None:
        # Taking the write lock is the question: reads work while another
        # process holds it, writes do not.
        with _transaction(self._db()):
            pass

    def _write(self, plain: list[tuple[Any, ...]], rated: list[tuple[Any, ...]]) -> None:
        db = self._db()
        with _transaction(db):
            if plain:
                db.executemany(_UPSERT_UNRATED, plain)
            if rated:
                db.executemany(_UPSERT, rated)

    def _feedback(self, params: tuple[Any, ...]) -> bool:
        db = self._db()
        with _transaction(db):
            (recorded,) = db.execute(_FEEDBACK, params).fetchone()
        return bool(recorded)

    def _feedback_many(self, rows: list[tuple[Any, ...]]) -> None:
        db = self._db()
        with _transaction(db):
            for params in rows:
                db.execute(_FEEDBACK, params).fetchall()

    def _mark_user_retries(self, request_ids: list[tuple[str]]) -> None:
        db = self._db()
        with _transaction(db):
            db.executemany(_MARK_USER_RETRY, request_ids)

    def _get(self, request_id: str) -> Interaction | None:
        row = self._db().execute(f"{_SELECT} WHERE request_id = ? AND recorded", (request_id,))
        found = row.fetchone()
        return None if found is None else from_row(found)

    def _page(
        self, where: InteractionFilter, after: tuple[float, str] | None, limit: int
    ) -> list[Interaction]:
        clause, params = where_sql(where, after, lambda _: "?")
        sql = (
            f"{_SELECT} INDEXED BY {scan_index(where)}"
            f" WHERE {clause} ORDER BY created_at, request_id LIMIT ?"
        )
        return [from_row(r) for r in self._db().execute(sql, [*params, limit])]

    def _purge(self, older_than: float) -> int:
        db = self._db()
        total = 0
        while True:
            with _transaction(db):
                deleted = db.execute(
                    "DELETE FROM interactions WHERE rowid IN (SELECT rowid FROM interactions"
                    " WHERE created_at < ? LIMIT ?)",
                    (older_than, _PURGE_CHUNK),
                ).rowcount
            total += deleted
            if deleted < _PURGE_CHUNK:
                return total

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the protocol ---------------------------------------------------------
    async def migrate(self) -> None:
        """Create or upgrade the schema (see :mod:`tara.telemetry.migrations`)."""
        await self._run(self._migrate)

    async def ping(self) -> None:
        """Raise unless the file takes a write now (the write lock is free within the timeout)."""
        await self._run(self._ping)

    async def write_batch(self, interactions: list[Interaction]) -> None:
        """Upsert the batch in one transaction."""
        if interactions:
            # Two statements, one per kind of row; a batch never holds one id twice, so
            # their order does not matter.
            plain: list[tuple[Any, ...]] = []
            rated: list[tuple[Any, ...]] = []
            for ix in latest_per_request(interactions):
                if unrated(ix):
                    plain.append(request_row(ix))
                else:
                    rated.append(to_row(ix))
            await self._run(self._write, plain, rated)

    async def apply_feedback(self, feedback: Feedback) -> bool:
        """Store feedback; ``False`` if the interaction is not written yet (kept for it)."""
        return await self._run(self._feedback, _feedback_params(feedback))

    async def apply_feedback_batch(self, feedback: Sequence[Feedback]) -> None:
        """Store feedback in order, in one transaction."""
        if feedback:
            await self._run(self._feedback_many, [_feedback_params(fb) for fb in feedback])

    async def mark_user_retries(self, request_ids: Sequence[str]) -> None:
        """Flag the stored interactions with these ids as user retries, in one transaction."""
        if request_ids:
            await self._run(self._mark_user_retries, [(rid,) for rid in request_ids])

    async def get(self, request_id: str) -> Interaction | None:
        """The stored interaction, or ``None``."""
        return await self._run(self._get, request_id)

    async def iter_interactions(
        self, where: InteractionFilter | None = None, *, batch_size: int = 1000
    ) -> AsyncIterator[Interaction]:
        """Stream matching interactions, ``batch_size`` rows per query."""
        where = where or InteractionFilter()
        after: tuple[float, str] | None = None
        while True:
            page = await self._run(self._page, where, after, batch_size)
            for ix in page:
                yield ix
            if len(page) < batch_size:
                return
            after = (page[-1].created_at, page[-1].request_id)

    async def purge(self, older_than: float) -> int:
        """Delete rows created before ``older_than``, in chunks."""
        return await self._run(self._purge, older_than)

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread."""
        await self._run(self._close)
        self._executor.shutdown(wait=False)
