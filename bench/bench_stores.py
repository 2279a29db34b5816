"""What one Redis and one PostgreSQL sustain for the gateway's workload.

Drives the real store code the gateway runs, batched the way the gateway
batches it, and measures the store server's own CPU per request:

* **Redis** (single-threaded, so one core is its ceiling): one replica's
  flush of ``--flush`` requests: the window-stats recorder (one script call:
  ``HINCRBY``s, ``PFADD`` and ``EXPIREAT`` per bucket, fine and hourly),
  the request index (one script call: ``HSET`` + ``EXPIREAT`` per request)
  and the user-retry memory (one script call: ``ZADD``, trims, ``EXPIREAT``
  and a range read per request), plus one feedback join (script:
  ``HGETALL`` + ``HSET``) for every ``--rated`` share of requests. The
  bench starts a private ``redis-server`` (nothing else runs on it) and
  reads its CPU from ``INFO cpu`` (``used_cpu_user + used_cpu_sys``).
* **PostgreSQL**: the interaction-log writer's batches of ``--batch`` rows
  (binary ``COPY`` into a staging table, one upsert into the monthly
  partitions) and one feedback upsert per batch for its ratings, on one connection whose
  backend CPU is read from ``/proc``. PostgreSQL uses a core per busy
  connection: the figure is per core.

Requests/s sustained = 1 / (server CPU seconds per request). Prints a
Markdown table and writes the rows for the benchmarks table to
``bench/results/stores.json``. The servers are the machine's (
PostgreSQL on 127.0.0.1:5432 database ``test``, ``redis-server`` on the
path); other load on PostgreSQL inflates its cost, so the best of
``--rounds`` is kept.

Run: ``.venv/bin/python bench/bench_stores.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import ROOT, cpu_seconds, private_redis
from table import write_results
from tara.gateway.chat import new_request_id
from tara.telemetry.interactions import Interaction
from tara.telemetry.log import Feedback
from tara.telemetry.log_postgres import PostgresInteractionLog
from tara.telemetry.migrations.postgres import MIGRATIONS
from tara.telemetry.request_index import CountedFeedback
from tara.telemetry.request_index_redis import RedisRequestIndex
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.user_retries import RedisRetryMemory, UserRetryDetector
from tara.telemetry.window_recorder import WindowRecorder
from tara.telemetry.window_store_redis import RedisWindowStore

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_REQUESTS = 10_000
"""Requests per Redis round (flushes of ``--flush`` repeated), for a steady CPU reading."""
SUBJECTS = ("math", "physics", "chemistry")
LANGUAGES = ("hi", "ta", "en")


def interactions(count: int, *, canary_share: float = 0.1) -> list[Interaction]:
    """``count`` finished requests of distinct students, as the gateway records them."""
    now = time.time()
    out = []
    for i in range(count):
        canary = i < count * canary_share
        out.append(
            Interaction(
                request_id=new_request_id(),
                created_at=now,
                track="tara-tutor",
                segment="all",
                variant="canary" if canary else "stable",
                model="tara-candidate" if canary else "tara-stable",
                student_hash=secrets.token_hex(32),
                subject=SUBJECTS[i % 3],
                language=LANGUAGES[i % 3],
                grade="9",
                status=200,
                latency_s=0.4 + (i % 7) / 10,
                ttft_s=0.06,
                prompt_tokens=60,
                completion_tokens=180,
                stream=True,
                messages=[
                    {"role": "system", "content": "You are Tara, a caring Indian female AI tutor."},
                    {
                        "role": "user",
                        "content": f"Bench question {uuid.uuid4().hex}: what is 7 x 8?",
                    },
                ],
                answer="7 times 8 is 56. " * 12,
            )
        )
    return out


async def redis_cpu(client: aioredis.Redis) -> float:
    """Redis's CPU seconds so far (main thread and children)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class Cost:
    """Server CPU per request, and per part."""

    store: str
    flush: int
    cpu_us: float
    parts: dict[str, float]
    writes: str

    @property
    def sustained(self) -> float:
        """Requests per second at 100% of one server core."""
        return 1e6 / self.cpu_us


async def redis_round(url: str, flush: int, rated: float) -> Cost:
    """One replica's flush of ``flush`` requests, and their ratings, against Redis."""
    client = aioredis.Redis.from_url(url)
    namespace = f"tara-bench-{uuid.uuid4().hex[:8]}"
    settings = TelemetryStatsSettings()
    store = RedisWindowStore(client, namespace=namespace, settings=settings)
    recorder = WindowRecorder(store, settings)
    index = RedisRequestIndex(client, namespace=namespace, settings=settings)
    detector = UserRetryDetector(RedisRetryMemory(client, namespace=namespace), recorder, settings)
    repeat = max(1, REDIS_REQUESTS // flush)
    batches = [interactions(flush) for _ in range(repeat)]
    rated_count = max(1, int(flush * rated))
    steps: dict[str, Callable[[list[Interaction]], Awaitable[None]]] = {
        "window stats": lambda batch: _window(recorder, batch),
        "request index": lambda batch: _index(index, batch),
        "retry memory": lambda batch: _retries(detector, batch),
        "feedback": lambda batch: _feedback(index, batch[:rated_count]),
    }
    parts: dict[str, float] = {}
    try:
        for name, step in steps.items():
            before = await redis_cpu(client)
            for batch in batches:
                await step(batch)
            parts[name] = await redis_cpu(client) - before
    finally:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
        await client.aclose()
    per_request = {k: 1e6 * v / (flush * repeat) for k, v in parts.items()}
    writes = (
        "per request: HSET+EXPIREAT (index), ZADD+trim+EXPIREAT+range read (retries); "
        f"per flush of {flush}: 1 MULTI with HINCRBY/PFADD/EXPIREAT per bucket (fine+hourly), "
        "1 script call each for index and retries; per rating: 1 script (HGETALL+HSET)"
    )
    return Cost("Redis", flush, sum(per_request.values()), per_request, writes)


async def _window(recorder: WindowRecorder, batch: list[Interaction]) -> None:
    for ix in batch:
        recorder.record(ix)
    assert await recorder.flush()


async def _index(index: RedisRequestIndex, batch: list[Interaction]) -> None:
    for ix in batch:
        index.record(ix)
    await index.flush()


async def _retries(detector: UserRetryDetector, batch: list[Interaction]) -> None:
    for ix in batch:
        detector.record(ix)
    await detector.flush(decide_all=True)


async def _feedback(index: RedisRequestIndex, rated: list[Interaction]) -> None:
    for ix in rated:
        assert await index.set_feedback(ix.request_id, CountedFeedback(4, ("wrong",))) is not None


async def postgres_round(
    batch_size: int, batches: int, rated: float, *, partitioned: bool = True
) -> Cost:
    """``batches`` log batches of ``batch_size`` rows and their ratings, on one backend.

    ``partitioned=False`` stops before migration 3 (one table), for comparison.
    """
    schema = f"tara_bench_{uuid.uuid4().hex[:8]}"
    migrations = MIGRATIONS if partitioned else MIGRATIONS[:2]
    log = PostgresInteractionLog(
        PG_DSN, schema=schema, min_size=1, max_size=1, migrations=migrations
    )
    try:
        await log.migrate()
        pool = await log._connected()
        pid = int(await pool.fetchval("SELECT pg_backend_pid()"))
        rows = [interactions(batch_size) for _ in range(batches)]
        before = cpu_seconds(pid)
        for batch in rows:
            await log.write_batch(batch)
        written = cpu_seconds(pid) - before
        rated_ids = [ix for batch in rows for ix in batch][: int(batch_size * batches * rated)]
        now = time.time()
        ratings = [Feedback(ix.request_id, 4, ["wrong"], 0.8, None, now) for ix in rated_ids]
        per_flush = max(1, int(batch_size * rated))  # the writer's batches mix them in
        before = cpu_seconds(pid)
        for at in range(0, len(ratings), per_flush):
            await log.apply_feedback_batch(ratings[at : at + per_flush])
        feedback = cpu_seconds(pid) - before
    finally:
        await log.aclose()
        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    n = batch_size * batches
    parts = {"log rows": 1e6 * written / n, "feedback": 1e6 * feedback / n}
    writes = (
        f"per request: 1 row in a batch of {batch_size} (COPY to staging + 1 upsert, "
        "1 transaction per batch); ratings: those of a batch in 1 upsert statement"
    )
    name = "PostgreSQL" if partitioned else "PostgreSQL, one table (no partitions)"
    return Cost(name, batch_size, sum(parts.values()), parts, writes)


def best(costs: list[Cost]) -> Cost:
    """The cheapest round (other load on a shared server only adds)."""
    return min(costs, key=lambda c: c.cpu_us)


def render(costs: list[Cost], rated: float) -> str:
    """A Markdown table of the measured costs."""
    lines = [
        f"ratings: {rated:.0%} of requests",
        "",
        "| store | batch (requests) | server CPU/request (µs) | of which | requests/s "
        "per server core |",
        "|---|---|---|---|---|",
    ]
    for c in costs:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in c.parts.items())
        lines.append(f"| {c.store} | {c.flush} | {c.cpu_us:.1f} | {parts} | {c.sustained:,.0f} |")
    return "\n".join(lines)


def table_rows(costs: list[Cost]) -> list[dict[str, Any]]:
    """The rows of ``bench/results/stores.json`` (the goal: state it, on paper)."""
    return [
        {
            "point": f"one {c.store} sustains (batches of {c.flush}; {c.writes})",
            "gateway": f"{c.sustained:,.0f} requests/s per server core "
            f"({c.cpu_us:.1f} µs server CPU per request)",
            "bare": "",
            "goal": "measured and stated in docs/benchmarks.md",
            "holds": True,
        }
        for c in costs
    ]


async def run(args: argparse.Namespace) -> list[Cost]:
    """Every configuration, best of the rounds each."""
    costs = []
    with private_redis() as url:
        for flush in args.flush:
            rounds = [await redis_round(url, flush, args.rated) for _ in range(args.rounds)]
            costs.append(best(rounds))
    for size in args.batch:
        rounds = [await postgres_round(size, args.batches, args.rated) for _ in range(args.rounds)]
        costs.append(best(rounds))
    size = args.batch[-1]
    rounds = [
        await postgres_round(size, args.batches, args.rated, partitioned=False)
        for _ in range(args.rounds)
    ]
    costs.append(best(rounds))
    return costs


def main() -> int:
    """Measure, print, save."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--flush", type=int, nargs="+", default=[100, 1000], help="requests per Redis flush"
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[100, 500], help="rows per log batch"
    )
    parser.add_argument("--batches", type=int, default=40, help="log batches per round")
    parser.add_argument("--rated", type=float, default=0.2, help="share of requests rated")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per configuration")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "stores.json")
    args = parser.parse_args()
    costs = asyncio.run(run(args))
    print(render(costs, args.rated))
    write_results(args.results, table_rows(costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
