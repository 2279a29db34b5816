"""Gateway overhead benchmark: direct vs a minimal pass-through proxy vs the gateway.

Starts ``tara sandbox`` (zero-latency models), the pass-through proxy of
``bench/passthrough.py`` and ``tara serve`` (Redis routing table with a 10%
canary, metrics and the whole telemetry pipeline on, interaction log in a
temporary SQLite file) as separate processes, plus a second gateway with
``telemetry.capture = off`` (no interaction log; Prometheus, window stats
and retry detection still on) to show what the log writer costs. Then it
measures for each target:
requests/s at 32 concurrent, p50/p99 latency at 1 concurrent, streaming time
to first byte, server CPU per request (from /proc, over the 32-concurrent
run), and the gateway's peak RSS.

The machine is usually shared, so every target is measured ``--rounds``
times (default 2), the rounds interleaved across targets, and each number is
the best of its rounds.

Run: ``.venv/bin/python bench/bench_gateway.py`` (``--quick`` for a smoke run).
Needs Redis on 127.0.0.1:6379 (the routing table lives there, as in production).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import QUESTIONS, new_students, question_bodies, run_load
from procs import ROOT, TARA, child, cpu_seconds, peak_rss_mb
from tara.rollout.routing import CanaryRoute, RoutingTable, Segment, TrackRoute
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.serving import free_port

TRACK = "tara-tutor"


@dataclass
class Row:
    """One target's numbers."""

    target: str
    rps_32: float
    p50_ms_1: float
    p99_ms_1: float
    ttfb_p50_ms: float
    cpu_us_per_req: float
    errors: int


async def measure(name: str, url: str, model: str, pid: int, auth: str, quick: bool) -> Row:
    """Run the three load shapes against one target."""
    plain_bodies = question_bodies(model, stream=False)
    streamed_bodies = question_bodies(model, stream=True)

    def plain(i: int) -> bytes:
        return plain_bodies[i % QUESTIONS]

    def streamed(i: int) -> bytes:
        return streamed_bodies[i % QUESTIONS]

    n1, n_stream, dur = (200, 100, 2.0) if quick else (3000, 1000, 15.0)

    await run_load(url, plain, new_students(auth), concurrency=8, count=200)
    one = await run_load(url, plain, new_students(auth), concurrency=1, count=n1)
    cpu0 = cpu_seconds(pid)
    many = await run_load(url, plain, new_students(auth), concurrency=32, duration=dur)
    cpu = cpu_seconds(pid) - cpu0
    st = await run_load(
        url, streamed, new_students(auth), concurrency=1, count=n_stream, stream=True
    )
    bad = sum(n for s, n in (one.statuses + many.statuses + st.statuses).items() if s != 200)
    return Row(
        target=name,
        rps_32=many.rps,
        p50_ms_1=one.median_ms(),
        p99_ms_1=one.pct(0.99),
        ttfb_p50_ms=st.pct(0.5, st.ttfb),
        cpu_us_per_req=1e6 * cpu / max(1, len(many.latencies)),
        errors=bad,
    )


def best(rows: list[Row]) -> Row:
    """Each number at its best over several rounds of one target."""
    return Row(
        target=rows[0].target,
        rps_32=max(r.rps_32 for r in rows),
        p50_ms_1=min(r.p50_ms_1 for r in rows),
        p99_ms_1=min(r.p99_ms_1 for r in rows),
        ttfb_p50_ms=min(r.ttfb_p50_ms for r in rows),
        cpu_us_per_req=min(r.cpu_us_per_req for r in rows),
        errors=sum(r.errors for r in rows),
    )


BENCH_KEY = "sk-bench-client"
"""The benchmarked gateways' client key (with Redis, ``tara serve`` refuses the dev keys)."""


def gateway_env(upstream: str, namespace: str, sqlite_path: Path) -> dict[str, str]:
    """Environment of a benchmarked ``tara serve``: Redis state, keys, the track, a log file."""
    return {
        "TARA_AUTH__CLIENT_KEYS": json.dumps([BENCH_KEY]),
        "TARA_AUTH__ADMIN_KEY": "sk-bench-admin",
        "TARA_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TARA_REDIS_NAMESPACE": namespace,
        "TARA_UPSTREAM__BASE_URL": upstream,
        "TARA_TRACKS": json.dumps({TRACK: {"stable_model": "bench-fast"}}),
        "TARA_TELEMETRY__SQLITE_PATH": str(sqlite_path),
        "TARA_LOG_LEVEL": "WARNING",
    }


async def seed_table(namespace: str) -> None:
    """A 10% canary on the whole track, in Redis, where the gateway reads it."""
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    store = RedisRoutingStore(client, namespace)
    canary = CanaryRoute("bench", Segment(), "bench-fast-canary", uuid.uuid4().hex, 1000)
    table = RoutingTable(1, {TRACK: TrackRoute("bench-fast", (canary,))})
    await store.save_table(table, await store.load_version())
    await client.aclose()


async def drop_namespace(namespace: str) -> None:
    """Remove the benchmark's Redis keys."""
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = [k async for k in client.scan_iter(match=f"{namespace}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def render(rows: list[Row], rss_mb: float) -> str:
    """A Markdown table with the overhead against the direct call."""
    direct = rows[0]
    lines = [
        "| target | req/s @32 | p50 @1 (ms) | added p50 (ms) | p99 @1 (ms) "
        "| stream TTFB p50 (ms) | server CPU/req (µs) | non-200 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        added = "" if r is direct else f"{r.p50_ms_1 - direct.p50_ms_1:+.2f}"
        lines.append(
            f"| {r.target} | {r.rps_32:,.0f} | {r.p50_ms_1:.2f} | {added} | {r.p99_ms_1:.2f} "
            f"| {r.ttfb_p50_ms:.2f} | {r.cpu_us_per_req:,.0f} | {r.errors} |"
        )
    pt = rows[1]
    lines.append("")
    for gw in rows[2:]:
        ratio = gw.cpu_us_per_req / pt.cpu_us_per_req
        lines.append(f"{gw.target}: CPU/request = {ratio:.2f}x the pass-through  ")
    lines.append(f"gateway peak RSS {rss_mb:.0f} MiB")
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark and print the table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per target (2; quick 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)

    sb_port, pt_port, gw_port, gw2_port = free_port(), free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{sb_port}/v1"
    namespace = f"tara-bench-{uuid.uuid4().hex[:8]}"
    data_dir = tempfile.TemporaryDirectory(prefix="tara-bench-")
    gw_env = gateway_env(upstream, namespace, Path(data_dir.name) / "interactions.db")
    asyncio.run(seed_table(namespace))
    models = str(ROOT / "bench" / "sandbox-models.toml")
    sandbox = [TARA, "sandbox", "--port", str(sb_port), "--seed", "1", "--models", models]
    proxy = [sys.executable, str(ROOT / "bench" / "passthrough.py"), "--port", str(pt_port)]
    proxy += ["--upstream", upstream]
    gateway = [TARA, "serve", "--port", str(gw_port)]
    gateway2 = [TARA, "serve", "--port", str(gw2_port)]
    gw2_env = {**gw_env, "TARA_TELEMETRY__CAPTURE": "off"}
    chat = "/v1/chat/completions"
    try:
        with (
            data_dir,
            child(sandbox, f"{upstream}/models") as sb,
            child(proxy, f"http://127.0.0.1:{pt_port}/") as pt,
            child(gateway, f"http://127.0.0.1:{gw_port}/readyz", env=gw_env) as gw,
            child(gateway2, f"http://127.0.0.1:{gw2_port}/readyz", env=gw2_env) as gw2,
        ):
            targets = [
                ("direct", upstream + "/chat/completions", "bench-fast", sb.pid, "sk-sandbox"),
                (
                    "pass-through (aiohttp)",
                    f"http://127.0.0.1:{pt_port}{chat}",
                    "bench-fast",
                    pt.pid,
                    "x",
                ),
                (
                    "gateway (10% canary)",
                    f"http://127.0.0.1:{gw_port}{chat}",
                    TRACK,
                    gw.pid,
                    BENCH_KEY,
                ),
                (
                    "gateway, interaction log off",
                    f"http://127.0.0.1:{gw2_port}{chat}",
                    TRACK,
                    gw2.pid,
                    BENCH_KEY,
                ),
            ]
            runs: list[list[Row]] = [[] for _ in targets]
            for _ in range(rounds):
                for i, (name, url, model, pid, auth) in enumerate(targets):
                    runs[i].append(asyncio.run(measure(name, url, model, pid, auth, args.quick)))
            rows = [best(r) for r in runs]
            rss = peak_rss_mb(gw.pid)
    finally:
        asyncio.run(drop_namespace(namespace))
    print(render(rows, rss))
    if args.json:
        rounds_out = [[asdict(r) for r in target_runs] for target_runs in runs]
        out = {"rows": [asdict(r) for r in rows], "rounds": rounds_out, "rss_mb": rss}
        args.json.write_text(json.dumps(out))
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
