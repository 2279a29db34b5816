"""Monthly partitions of the PostgreSQL interaction log: which exist, which to add, which to drop.

The table is partitioned by range of ``request_id``, not of ``created_at``:
a request id starts with the arrival time in milliseconds as 12 hex digits
(:func:`tara.gateway.chat.new_request_id`), so one month is one range of ids,
and ``request_id`` stays the primary key on its own (PostgreSQL wants the
partition key inside every unique key). Upserts, early feedback and the
user-retry flag keep finding their row by ``request_id`` alone, exactly as
before partitioning. Rows whose id carries no time (tests, imports) go to the
``DEFAULT`` partition; rows from before partitioning stay in
``interactions_legacy`` (ids up to the month of the migration).

Kept ahead: the gateways' migration step and ``tara log purge`` create the
current month's partition and ``pg_partitions_ahead`` more, filling any gap
since the newest; a row arriving for a month without its partition lands in
the default one and moves when the partition is created. Purged per
partition: a partition whose every id is older than the cut-off and whose
newest ``created_at`` is too is dropped whole; the rest is deleted row by row.

The decisions are the pure functions here; :mod:`tara.telemetry.log_postgres`
runs the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

PARENT = "interactions"
DEFAULT = "interactions_default"
LEGACY = "interactions_legacy"
ID_TIME_DIGITS = 12
"""Hex digits of the arrival time (ms) at the start of every request id."""


def id_bound(t: float) -> str:
    """The smallest request id of a request arriving at unix time ``t``."""
    return f"{int(t * 1000):0{ID_TIME_DIGITS}x}"


def month_start(t: float) -> datetime:
    """The first instant (UTC) of the month holding unix time ``t``."""
    day = datetime.fromtimestamp(t, UTC)
    return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    """The first instant of the month after the one starting at ``start``."""
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


@dataclass(frozen=True, slots=True)
class MonthPartition:
    """One month of the log: its table name and its range of request ids."""

    name: str
    lower: str
    upper: str


def month_partition(start: datetime) -> MonthPartition:
    """The partition of the month starting at ``start``."""
    end = next_month(start)
    return MonthPartition(
        f"{PARENT}_y{start.year:04d}m{start.month:02d}",
        id_bound(start.timestamp()),
        id_bound(end.timestamp()),
    )


def months_to_create(newest_upper: str | None, now: float, ahead: int) -> list[MonthPartition]:
    """Month partitions to add: from the newest one's end (or this month) to ``ahead`` past now.

    ``newest_upper`` is the upper id bound of the newest partition that
    exists (the legacy one included); months before it exist already.
    """
    month = last = month_start(now)
    for _ in range(ahead):
        last = next_month(last)
    if newest_upper is not None:  # fill the months since the newest partition too
        month = min(month, month_start(int(newest_upper, 16) / 1000))
    out = []
    while month <= last:
        part = month_partition(month)
        if newest_upper is None or part.lower >= newest_upper:
            out.append(part)
        month = next_month(month)
    return out


_RANGE = re.compile(r"FOR VALUES FROM \((?:MINVALUE|'([0-9a-f]*)')\) TO \('([0-9a-f]*)'\)")


def upper_bound(bound_expr: str) -> str | None:
    """The upper id bound of a partition from ``pg_get_expr(relpartbound)``; ``None`` for
    the default partition (or any bound this module did not write)."""
    match = _RANGE.fullmatch(bound_expr.strip())
    return match.group(2) if match else None


def droppable(uppers: dict[str, str | None], older_than: float) -> list[str]:
    """Partitions whose every request id is older than ``older_than`` (the default never is).

    A caller still checks each one's newest ``created_at`` before dropping it.
    """
    cut = id_bound(older_than)
    return sorted(name for name, upper in uppers.items() if upper is not None and upper <= cut)


# -- the SQL (asyncpg connection, search_path at the log's schema) ------------------------
_PARTITIONS = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass('interactions')
"""


async def partition_uppers(conn: asyncpg.Connection) -> dict[str, str | None] | None:
    """Each partition's upper id bound (``None``: the default); ``None`` if not partitioned."""
    kind = await conn.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass('interactions')"
    )
    if kind != "p":  # an unmigrated or pre-partitioning table
        return None
    return {name: upper_bound(expr) for name, expr in await conn.fetch(_PARTITIONS)}


async def ensure(conn: asyncpg.Connection, now: float, ahead: int) -> list[str]:
    """Create the missing month partitions up to ``ahead`` months past ``now``; their names.

    Each new partition takes over the rows of its month from the default one.
    Run it under the migration lock (replicas starting together take turns).
    """
    uppers = await partition_uppers(conn)
    if uppers is None:
        return []
    known = [u for u in uppers.values() if u is not None]
    created = []
    for part in months_to_create(max(known, default=None), now, ahead):
        async with conn.transaction():
            # Names and bounds come from months_to_create only: hex digits and digits.
            await conn.execute(f'CREATE TABLE "{part.name}" (LIKE {PARENT} INCLUDING DEFAULTS)')
            await conn.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT} WHERE request_id >= $1"  # noqa: S608
                f' AND request_id < $2 RETURNING *) INSERT INTO "{part.name}" SELECT * FROM moved',
                part.lower,
                part.upper,
            )
            await conn.execute(
                f'ALTER TABLE {PARENT} ATTACH PARTITION "{part.name}"'
                f" FOR VALUES FROM ('{part.lower}') TO ('{part.upper}')"
            )
        created.append(part.name)
    return created


async def drop_older(conn: asyncpg.Connection, older_than: float) -> int:
    """Drop the partitions holding only rows created before ``older_than``; rows dropped."""
    uppers = await partition_uppers(conn)
    if uppers is None:
        return 0
    dropped = 0
    for name in droppable(uppers, older_than):
        # Ids carry the arrival time, but a row's created_at is what purge promises.
        newest = await conn.fetchval(f'SELECT max(created_at) FROM "{name}"')  # noqa: S608
        if newest is not None and newest >= older_than:
            continue
        async with conn.transaction():
            rows: int = await conn.fetchval(f'SELECT count(*) FROM "{name}"')  # noqa: S608
            await conn.execute(f'DROP TABLE "{name}"')
        dropped += rows
    return dropped
