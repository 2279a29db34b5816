"""Interaction-log throughput: batch inserts, the writer end to end, and streaming reads.

Runs against a SQLite file in a temp dir and the PostgreSQL at ``--dsn`` (a
throwaway schema, dropped afterwards). For PostgreSQL it also compares the
driver strategies the choice of asyncpg was based on; psycopg rows are
skipped when psycopg 3 is not installed.

    .venv/bin/python bench/bench_log.py --rows 50000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from tara.telemetry.interactions import Interaction
from tara.telemetry.log import COLUMNS, InteractionFilter, InteractionLog, upsert_sql
from tara.telemetry.log_postgres import PostgresInteractionLog, encode_json, to_row
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.telemetry.log_writer import InteractionLogWriter

QUESTION = "द्विघात समीकरण x² - 5x + 6 = 0 को हल कीजिए और हर चरण समझाइए।"
ANSWER = "इसे (x - 2)(x - 3) = 0 के रूप में लिखें, इसलिए x = 2 या x = 3. " * 6


def rows(n: int) -> list[Interaction]:
    """``n`` realistic interactions (Hindi text, ~1 KB each)."""
    now = time.time()
    base = Interaction(
        request_id="",
        created_at=now,
        track="tara-tutor",
        segment="default",
        variant="stable",
        model="tara-stable",
        student_hash="ab" * 32,
        subject="math",
        language="hi",
        grade="10",
        status=200,
        latency_s=1.2,
        ttft_s=0.3,
        prompt_tokens=120,
        completion_tokens=240,
        messages=[
            {"role": "system", "content": "You are Tara, a caring Indian female AI tutor."},
            {"role": "user", "content": QUESTION},
        ],
        answer=ANSWER,
    )
    return [
        dataclasses.replace(
            base,
            request_id=uuid.uuid4().hex,
            created_at=now + i * 1e-3,
            language=("hi", "ta", "en")[i % 3],
            subject=("math", "physics", "chemistry", "biology")[i % 4],
        )
        for i in range(n)
    ]


async def timed(work: Callable[[], Awaitable[Any]]) -> float:
    """Wall-clock seconds that ``work`` takes."""
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def bench_log(name: str, log: InteractionLog, data: list[Interaction], batch: int) -> None:
    """Batch upserts, the writer end to end, and streaming reads through one log."""
    await log.migrate()

    async def insert() -> None:
        for i in range(0, len(data), batch):
            await log.write_batch(data[i : i + batch])

    report(f"{name}: write_batch upsert", len(data), await timed(insert))

    fresh = [dataclasses.replace(ix, request_id=uuid.uuid4().hex) for ix in data]
    writer = InteractionLogWriter(log, batch_size=batch, queue_size=len(fresh) + 1)
    start = time.perf_counter()
    for ix in fresh:
        writer.record(ix)
    per_record = (time.perf_counter() - start) / len(fresh)
    writer.start()
    elapsed = time.perf_counter() - start + await timed(lambda: writer.aclose(timeout=600))
    report(
        f"{name}: writer record→stored", len(fresh), elapsed, f"record() {per_record * 1e6:.1f} µs"
    )

    async def scan() -> int:
        return sum([1 async for _ in log.iter_interactions(batch_size=1000)])

    report(f"{name}: iter_interactions", 2 * len(data), await timed(scan))
    where = InteractionFilter(language="ta", subject="physics")

    async def scan_filtered() -> int:
        return sum([1 async for _ in log.iter_interactions(where, batch_size=1000)])

    matched = 2 * len(data) // 12
    report(f"{name}: iter language+subject (1/12)", matched, await timed(scan_filtered))
    tracemalloc.start()
    count = 0
    async for _ in log.iter_interactions(batch_size=1000):
        count += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    report(f"{name}: iter peak memory", count, None, f"{peak / 1e6:.1f} MB for {count} rows")
    await log.aclose()


JSON_COLUMNS = frozenset({"messages", "tags"})
COLS = ", ".join(COLUMNS)
UPSERT_TAIL = upsert_sql("x").split(" ON CONFLICT ", 1)[1]
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage (LIKE interactions INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"
)
FROM_STAGE = f"INSERT INTO interactions ({COLS}) SELECT {COLS} FROM stage ON CONFLICT {UPSERT_TAIL}"
Strategy = Callable[[list[Interaction]], Awaitable[None]]


def text_row(ix: Interaction) -> tuple[Any, ...]:
    """Row with JSON already encoded to text (for drivers without our jsonb codec)."""
    return tuple(
        encode_json(v) if c in JSON_COLUMNS and v is not None else v
        for c, v in zip(COLUMNS, to_row(ix), strict=True)
    )


def batches(data: list[Interaction], size: int) -> list[list[Interaction]]:
    """``data`` cut into lists of at most ``size``."""
    return [data[i : i + size] for i in range(0, len(data), size)]


async def bench_drivers(
    dsn: str, schema: str, data: list[Interaction], batch: int, repeat: int
) -> None:
    """Insert strategies for PostgreSQL, row conversion included, best of ``repeat`` runs."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    # Binary COPY needs a binary jsonb codec: a version byte, then the JSON text.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: b"\x01" + encode_json(v).encode(),
        decoder=lambda b: b[1:],
        schema="pg_catalog",
        format="binary",
    )

    async def apg_executemany(chunk: list[Interaction]) -> None:
        sql = upsert_sql(", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1)))
        async with conn.transaction():
            await conn.executemany(sql, [to_row(ix) for ix in chunk])

    async def apg_copy(chunk: list[Interaction]) -> None:
        async with conn.transaction():
            await conn.execute(STAGE)
            await conn.copy_records_to_table(
                "stage", records=[to_row(ix) for ix in chunk], columns=list(COLUMNS)
            )
            await conn.execute(FROM_STAGE)

    # Arrays of jsonb would nest the JSON lists, so JSON travels as text and is cast.
    types = [
        "text", "float8", "text", "text", "text", "text", "text", "text", "text", "text",
        "int4", "text", "float8", "float8", "int4", "int4", "bool", "bool", "bool", "text",
        "text", "int2", "text", "float8", "text", "float8",
    ]  # fmt: skip
    params = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    select = ", ".join(f"u.{c}::jsonb" if c in JSON_COLUMNS else f"u.{c}" for c in COLUMNS)
    unnest_sql = (
        f"INSERT INTO interactions ({COLS}) SELECT {select}"
        f" FROM unnest({params}) AS u({COLS}) ON CONFLICT {UPSERT_TAIL}"
    )

    async def apg_unnest(chunk: list[Interaction]) -> None:
        await conn.execute(unnest_sql, *zip(*[text_row(ix) for ix in chunk], strict=True))

    strategies: list[tuple[str, Strategy]] = [
        ("asyncpg executemany", apg_executemany),
        ("asyncpg COPY to stage + upsert (chosen)", apg_copy),
        ("asyncpg unnest arrays", apg_unnest),
    ]
    psycopg_conn = await psycopg_connect(dsn, schema)
    if psycopg_conn is not None:
        strategies += psycopg_strategies(psycopg_conn)
    chunks = batches(data, batch)
    best = dict.fromkeys((name for name, _ in strategies), float("inf"))
    # Rounds interleave the strategies so that load from other processes on
    # the machine drifts over all of them alike; the best run of each counts.
    for _ in range(repeat):
        for name, write in strategies:
            await conn.execute("TRUNCATE interactions")
            start = time.perf_counter()
            for chunk in chunks:
                await write(chunk)
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        report(f"postgres driver: {name}", len(data), seconds, f"best of {repeat}")
    if psycopg_conn is not None:
        await psycopg_conn.close()
    await conn.close()


async def psycopg_connect(dsn: str, schema: str) -> Any:
    """An autocommit psycopg 3 connection, or ``None`` when psycopg is not installed."""
    try:
        import psycopg
    except ImportError:
        print("(psycopg 3 not installed: skipping its rows)")
        return None
    return await psycopg.AsyncConnection.connect(
        dsn, options=f"-c search_path={schema}", autocommit=True
    )


def psycopg_strategies(conn: Any) -> list[tuple[str, Strategy]]:
    """psycopg 3 counterparts of the asyncpg strategies."""
    placeholders = ", ".join("%s::jsonb" if c in JSON_COLUMNS else "%s" for c in COLUMNS)
    sql = upsert_sql(placeholders)

    async def executemany(chunk: list[Interaction]) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(sql, [text_row(ix) for ix in chunk])

    async def copy(chunk: list[Interaction]) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(STAGE)
            async with cur.copy(f"COPY stage ({COLS}) FROM STDIN") as cp:
                for ix in chunk:
                    await cp.write_row(text_row(ix))
            await cur.execute(FROM_STAGE)

    return [("psycopg executemany", executemany), ("psycopg COPY to stage + upsert", copy)]


def report(name: str, n: int, seconds: float | None, note: str = "") -> None:
    """Print one table row: what, rows per second, a note."""
    rate = f"{n / seconds:>10,.0f}" if seconds else f"{'':>10}"
    print(f"{name:<56} {rate}   {note}")


async def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3, help="runs per driver strategy")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    data = rows(args.rows)
    print(f"{args.rows} rows, batches of {args.batch}")
    print(f"{'what':<56} {'rows/s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        await bench_log("sqlite", SqliteInteractionLog(Path(tmp) / "ix.db"), data, args.batch)
    if args.skip_postgres:
        return
    schema = f"tara_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        log = PostgresInteractionLog(args.dsn, schema=schema)
        await bench_log("postgres", log, data, args.batch)
        await bench_drivers(args.dsn, schema, data, args.batch, args.repeat)
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
