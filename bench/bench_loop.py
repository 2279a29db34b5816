"""Tail latency, event-loop lag, streaming CPU and open streams: the gateway beside a bare proxy.

Issue 16's points, each measured on the gateway and on two bare proxies
(``bench/passthrough.py``: the Starlette + aiohttp one the goals refer to,
and the thinnest raw-ASGI one) in interleaved rounds, so whatever else the
shared machine does hits them alike:

* saturation (256 concurrent, 60 ms upstream): p99 latency (non-streamed)
  and p99 time to first byte (streamed), with the event-loop lag of each
  server (``bench/lagprobe.py``: worst wake-up delay and worst per-second p99);
* an open loop at ~70% of one core's capacity (the arrival rate that keeps
  the gateway's core 70% busy, found by three short calibration runs from
  70% of its saturated rate): p99 added latency and added TTFB against the
  upstream called directly at the same rate, and how busy each server was;
* streaming CPU per request at 1, 32 and 256 concurrent (20 chunks over 20 ms);
* 1,000 concurrent streams (60 ms to first token, 20 chunks over 1 s):
  errors, p99 added TTFB, RSS per open stream (run before the open loop and
  the CPU points, so the RSS growth is measured on servers that have only
  been warmed up);
* the ``tara_gateway_overhead_seconds`` p99 the gateway itself reports.

The servers run pinned to core 0 (``taskset``); this load generator, the
fake upstream (``bench/fake_upstream.py``) and the gateways' Redis (a
``redis-server`` of the bench's own) to core 1. The gateway runs as in
production: routing table in Redis with a 10% canary, Prometheus metrics,
window stats, request index, retry detection, SSE tap with answer capture
and the SQLite interaction log with full capture. Every figure but
saturation's comes from servers without the lag probe (it wakes 500 times
a second); the probed servers are stopped once saturation is measured.

Run: ``.venv/bin/python bench/bench_loop.py`` (``--quick`` for a smoke run;
``--open-rate 400 --out bench/results/loop-400.json`` for the open loop
alone at a given rate);
it prints its rows and writes them to ``bench/results/loop.json``, which
``bench/table.py`` prints with every other result. Needs ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import BENCH_KEY
from loadgen import LoadResult, new_students, question_bodies, run_load
from procs import ROOT, child, cpu_seconds, private_redis
from rawload import run_open_streams, run_streams
from table import write_results
from tara.rollout.routing import CanaryRoute, RoutingTable, Segment, TrackRoute
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.serving import free_port
from tara.telemetry.metrics import MetricsRecorder

SAT = "bench-t60-s0"
"""60 ms to the first byte, the answer at once (streams: every chunk in one go)."""
PACED = "bench-t60-s1000"
"""60 ms to the first token, 20 chunks over one second."""
BRISK = "bench-t0-s20"
"""No wait, 20 chunks over 20 ms: streams for CPU per request."""
TRACKS = (SAT, PACED, BRISK)
SERVER_CORE, LOAD_CORE = "0", "1"
RESULTS = ROOT / "bench" / "results"
OPEN_BUSY = 0.7
"""The open loop's load: the arrival rate that keeps the gateway's core this busy."""
OPEN_BUSY_SPAN = 0.1
"""How far from ``OPEN_BUSY`` a measured open-loop run of the gateway may be."""
OPEN_TRIES = 3
"""Runs of the gateway per open-loop round at most, rescaling the rate between them."""


@dataclass
class Target:
    """One server the load goes to."""

    name: str
    base: str
    pid: int
    key: str
    lag_file: Path | None = None
    label: str = ""
    """How the table names a baseline."""

    @property
    def url(self) -> str:
        """The chat-completions URL."""
        return f"{self.base}/chat/completions"


def tracks_env() -> str:
    """``TARA_TRACKS``: one track per upstream profile, named after its stable model."""
    return json.dumps({t: {"stable_model": t} for t in TRACKS})


async def seed_table(url: str, namespace: str) -> None:
    """A 10% canary on every track, in the Redis at ``url``, where the gateway reads it."""
    client = aioredis.Redis.from_url(url)
    store = RedisRoutingStore(client, namespace)
    routes = {
        t: TrackRoute(t, (CanaryRoute("bench", Segment(), f"{t}-canary", uuid.uuid4().hex, 1000),))
        for t in TRACKS
    }
    await store.save_table(RoutingTable(1, routes), await store.load_version())
    await client.aclose()


def rss_kib(pid: int) -> int:
    """Current resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def lag_during(target: Target, start: float, end: float) -> tuple[float, float]:
    """Worst wake-up delay and worst per-second p99 (ms) the probe saw between the times."""
    if target.lag_file is None or not target.lag_file.exists():
        return float("nan"), float("nan")
    rows = [json.loads(line) for line in target.lag_file.read_text().splitlines() if line]
    rows = [r for r in rows if start <= r["t"] <= end + 1]
    if not rows:
        return float("nan"), float("nan")
    return max(r["max_ms"] for r in rows), max(r["p99_ms"] for r in rows)


def overhead_p99_ms(metrics_url: str) -> float:
    """The p99 of ``tara_gateway_overhead_seconds`` (all series) from a scrape, in ms."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("tara_gateway_overhead_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    if not buckets:
        return float("nan")
    total = buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= 0.99 * total:
            return 1000 * bound
    return float("nan")


class Bench:
    """The servers and the measurements; each ``point_*`` returns result rows."""

    def __init__(self, quick: bool, rounds: int) -> None:
        self.quick = quick
        self.rounds = rounds
        self.duration = 3.0 if quick else 12.0
        self.bodies = {(m, s): question_bodies(m, stream=s) for m in TRACKS for s in (False, True)}

    def body(self, model: str, stream: bool) -> Callable[[int], bytes]:
        """Request ``i``'s body for ``model``."""
        bodies = self.bodies[(model, stream)]
        return lambda i: bodies[i % len(bodies)]

    def closed(self, t: Target, model: str, stream: bool, c: int, dur: float) -> LoadResult:
        """A closed-loop run at ``c`` concurrent."""
        return asyncio.run(
            run_load(
                t.url, self.body(model, stream), new_students(t.key),
                concurrency=c, duration=dur, stream=stream,
            )
        )  # fmt: skip

    def opened(self, t: Target, model: str, stream: bool, rate: float) -> LoadResult:
        """An open-loop run at ``rate`` requests per second."""
        return run_open_streams(
            t.url, self.body(model, stream), new_students(t.key), rate=rate, duration=self.duration
        )


def errors(r: LoadResult) -> int:
    """Responses that were not 200."""
    return sum(n for s, n in r.statuses.items() if s != 200)


def med(values: list[float]) -> float:
    """Median of the rounds."""
    return statistics.median(values)


def row(point: str, gateway: str, bare: str, goal: str, holds: bool) -> dict[str, object]:
    """One result row in the shared format of ``bench/results/*.json``."""
    return {"point": point, "gateway": gateway, "bare": bare, "goal": goal, "holds": holds}


def bare_cell(values: list[tuple[Target, str]]) -> str:
    """The baselines' values, each named: the Starlette proxy first (the goals' reference)."""
    return "; ".join(f"{v} ({t.label})" for t, v in values)


def saturation(
    b: Bench, gw: Target, bares: list[Target]
) -> tuple[list[dict[str, object]], float, float]:
    """p99 at 256 concurrent (non-streamed, streamed) and loop lag; also the saturated rates."""
    out: dict[tuple[str, bool], list[tuple[float, float, float, float, int]]] = {}
    for _ in range(b.rounds):
        for stream in (False, True):
            for t in (gw, *bares):
                start = time.time()
                r = b.closed(t, SAT, stream, 256, b.duration)
                lag_max, lag_p99 = lag_during(t, start, time.time())
                p99 = r.pct(0.99, r.ttfb if stream else None)
                out.setdefault((t.name, stream), []).append(
                    (p99, r.rps, lag_max, lag_p99, errors(r))
                )
    rows = []
    for stream, what in ((False, "p99 latency"), (True, "p99 TTFB")):
        g = out[(gw.name, stream)]
        g99 = med([x[0] for x in g])
        ref99 = med([x[0] for x in out[(bares[0].name, stream)]])
        kind = "streamed" if stream else "non-streamed"
        cells = []
        lags = []
        for t in bares:
            p = out[(t.name, stream)]
            cells.append(
                (t, f"{med([x[0] for x in p]):.0f} ms, {med([x[1] for x in p]):,.0f} req/s")
            )
            lags.append((t, f"{max(x[2] for x in p):.1f} / {max(x[3] for x in p):.1f} ms"))
        rows.append(
            row(
                f"saturation, {kind}, c=256, 60 ms upstream: {what}",
                f"{g99:.0f} ms, {med([x[1] for x in g]):,.0f} req/s ({g99 / ref99:.2f}x)",
                bare_cell(cells),
                "≤ 1.1x bare",
                g99 <= 1.1 * ref99 and not any(x[4] for x in g),
            )
        )
        rows.append(
            row(
                f"event-loop lag at saturation, {kind}: worst / worst-second p99",
                f"{max(x[2] for x in g):.1f} / {max(x[3] for x in g):.1f} ms",
                bare_cell(lags),
                "(measured)",
                True,
            )
        )
    rate_plain = med([x[1] for x in out[(gw.name, False)]])
    rate_stream = med([x[1] for x in out[(gw.name, True)]])
    return rows, rate_plain, rate_stream


def core_ticks(core: str) -> tuple[int, int]:
    """Clock ticks core ``core`` has spent busy and in all since boot (``/proc/stat``).

    Busy counts the kernel's interrupt and soft-interrupt time too: a server's
    loopback sends are processed there, on its core, outside its own CPU time.
    """
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(x) for x in line.split()[1:]]
            idle = ticks[3] + ticks[4]  # idle, iowait
            return sum(ticks) - idle, sum(ticks)
    raise LookupError(core)


def busy(run: Callable[[], LoadResult]) -> tuple[LoadResult, float]:
    """Run a load; also how busy it kept the servers' core (busy ticks per tick)."""
    busy0, all0 = core_ticks(SERVER_CORE)
    r = run()
    busy1, all1 = core_ticks(SERVER_CORE)
    return r, (busy1 - busy0) / max(1, all1 - all0)


def at_open_load(load: float) -> bool:
    """Whether a run kept the core as busy as the open loop means to (``OPEN_BUSY_SPAN``)."""
    return abs(load - OPEN_BUSY) <= OPEN_BUSY_SPAN


def rescaled(rate: float, load: float) -> float:
    """The rate that would have kept the core ``OPEN_BUSY`` busy, had it cost the same."""
    return rate * OPEN_BUSY / max(load, 0.05)


def calibrated_rate(b: Bench, gw: Target, stream: bool, rate: float) -> float:
    """The arrival rate that keeps the gateway's core ``OPEN_BUSY`` busy.

    Starting from ``rate``, three short open loops each rescale the rate by
    how busy the last one kept the core (a request costs less CPU the more
    of them share a wake-up, so one step is not enough). Each runs 6 s past
    its warm-up: the retry checks start 3 s after a request, so a shorter
    run would miss their share.
    """
    for _ in range(3):
        run = functools.partial(
            run_open_streams, gw.url, b.body(SAT, stream), new_students(gw.key),
            rate=rate, duration=6.0,
        )  # fmt: skip
        _, load = busy(run)
        rate = rescaled(rate, load)
    return rate


def open_loop(
    b: Bench,
    gw: Target,
    bares: list[Target],
    direct: Target,
    rates: dict[bool, float],
    *,
    steer: bool = True,
) -> list[dict[str, object]]:
    """p99 added latency / TTFB at ``rates`` (requests a second), against direct.

    This machine's speed drifts between calibration and measurement (a rate
    calibrated to 70% once kept the core 41% busy a minute later), so with
    ``steer`` each round runs the gateway first and, while its core was not
    within ``OPEN_BUSY_SPAN`` of ``OPEN_BUSY``, rescales the rate and runs it
    again (``OPEN_TRIES`` runs at most); the other targets then run at the
    rate of the gateway's last run. A point holds only if the gateway's core
    was that busy: a short tail at a light load says nothing about the load
    the goal names.
    """
    rates = dict(rates)
    out: dict[tuple[str, bool], list[tuple[float, int, float]]] = {}
    used: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(b.rounds):
        for stream in (False, True):
            rate = rates[stream]
            for tries_left in reversed(range(OPEN_TRIES if steer else 1)):
                r, load = busy(functools.partial(b.opened, gw, SAT, stream, rate))
                if at_open_load(load) or not tries_left:
                    break
                rate = rescaled(rate, load)
            rates[stream] = rate  # the next round starts from here
            used[stream].append(rate)
            out.setdefault((gw.name, stream), []).append(
                (r.pct(0.99, r.ttfb if stream else None), errors(r), load)
            )
            for t in (direct, *bares):
                r, load = busy(functools.partial(b.opened, t, SAT, stream, rate))
                p99 = r.pct(0.99, r.ttfb if stream else None)
                out.setdefault((t.name, stream), []).append((p99, errors(r), load))
    rows = []
    for stream, what in ((False, "added p99 latency"), (True, "added p99 TTFB")):
        d = med([x[0] for x in out[(direct.name, stream)]])
        g = med([x[0] for x in out[(gw.name, stream)]]) - d
        load = med([x[2] for x in out[(gw.name, stream)]])

        def cell(t: Target, s: bool = stream, direct_p99: float = d) -> str:
            runs = out[(t.name, s)]
            added = med([x[0] for x in runs]) - direct_p99
            return f"{added:+.1f} ms (core {med([x[2] for x in runs]):.0%} busy)"

        bad = any(x[1] for x in out[(gw.name, stream)])
        kind = "streamed" if stream else "non-streamed"
        low, high = min(used[stream]), max(used[stream])
        span = f"{low:,.0f}" if round(low) == round(high) else f"{low:,.0f}–{high:,.0f}"
        rows.append(
            row(
                f"open loop at {span} req/s, {kind}, 60 ms upstream: "
                f"{what} (direct p99 {d:.0f} ms)",
                cell(gw),
                bare_cell([(t, cell(t)) for t in bares]),
                f"< 5 ms, core {OPEN_BUSY:.0%} ± {OPEN_BUSY_SPAN:.0%} busy",
                g < 5 and not bad and at_open_load(load),
            )
        )
    return rows


def request_cpu(b: Bench, gw: Target, bares: list[Target]) -> list[dict[str, object]]:
    """Server CPU per request: streamed (20 chunks over 20 ms) at 1, 32 and 256, and not."""
    out: dict[tuple[str, int, bool], list[float]] = {}
    shapes = [(1, True), (32, True), (256, True), (32, False)]
    for _ in range(b.rounds):
        for c, stream in shapes:
            for t in (gw, *bares):
                cpu0 = cpu_seconds(t.pid)
                body, heads = b.body(BRISK if stream else SAT, stream), new_students(t.key)
                r = run_streams(t.url, body, heads, concurrency=c, duration=b.duration)
                cpu = cpu_seconds(t.pid) - cpu0
                out.setdefault((t.name, c, stream), []).append(1e6 * cpu / max(1, len(r.latencies)))
    rows = []
    for c, stream in shapes:
        g = med(out[(gw.name, c, stream)])
        ref = med(out[(bares[0].name, c, stream)])
        cells = [(t, f"{med(out[(t.name, c, stream)]):,.0f} µs") for t in bares]
        ratios = ", ".join(f"{g / med(out[(t.name, c, stream)]):.2f}x {t.label}" for t in bares)
        if stream:
            point = f"streaming CPU per request, c={c} (20 chunks; tap, capture, log on)"
        else:
            point = f"non-streamed CPU per request, c={c} (60 ms upstream)"
        rows.append(
            row(
                point,
                f"{g:,.0f} µs ({ratios})",
                bare_cell(cells),
                "≤ 0.85x bare" if stream else "(measured)",
                g <= 0.85 * ref if stream else True,
            )
        )
    return rows


def open_streams(
    b: Bench, gw: Target, bares: list[Target], direct: Target, n: int = 1000
) -> list[dict[str, object]]:
    """``n`` concurrent paced streams: errors, p99 added TTFB, RSS per open stream."""
    dur = 6.0 if b.quick else 15.0
    res: dict[str, list[tuple[float, int, float]]] = {}
    rss_kib_at: dict[str, tuple[int, int]] = {}
    """The first round's RSS before the streams and at their peak (KiB), by target."""
    for _ in range(b.rounds):
        for t in (direct, gw, *bares):
            before = rss_kib(t.pid)
            peak = [before]
            stop = threading.Event()

            def watch(t: Target = t, peak: list[int] = peak, stop: threading.Event = stop) -> None:
                while not stop.wait(0.25):
                    peak.append(rss_kib(t.pid))

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                body, heads = b.body(PACED, True), new_students(t.key)
                r = run_streams(t.url, body, heads, concurrency=n, duration=dur)
            finally:
                stop.set()
                watcher.join()
            per_stream = (max(peak) - before) / n
            rss_kib_at.setdefault(t.name, (before, max(peak)))
            res.setdefault(t.name, []).append((r.pct(0.99, r.ttfb), errors(r), per_stream))
    d = med([x[0] for x in res[direct.name]])

    def ttfb(t: Target) -> float:
        return med([x[0] for x in res[t.name]]) - d

    def errs(t: Target) -> int:
        return sum(x[1] for x in res[t.name])

    def rss(t: Target) -> float:
        return max(x[2] for x in res[t.name])

    def rss_cell(t: Target) -> str:
        # A later round's growth reads ~0 (glibc keeps what the first round freed): the
        # row takes the largest growth, and the absolute figures are the first round's.
        before, top = (kib / 1024 for kib in rss_kib_at[t.name])
        return f"{rss(t):.1f} KiB (peak {top:.0f} MiB, {before:.0f} before)"

    return [
        row(
            f"{n:,} open streams (60 ms TTFT, 20 chunks over 1 s): errors",
            str(errs(gw)), bare_cell([(t, str(errs(t))) for t in bares]), "0", errs(gw) == 0,
        ),
        row(
            f"{n:,} open streams: added p99 TTFB (direct p99 {d:.0f} ms)",
            f"{ttfb(gw):+.1f} ms", bare_cell([(t, f"{ttfb(t):+.1f} ms") for t in bares]),
            "< 20 ms", ttfb(gw) < 20,
        ),
        row(
            f"{n:,} open streams: RSS growth per open stream",
            rss_cell(gw), bare_cell([(t, rss_cell(t)) for t in bares]),
            "< 30 KiB", rss(gw) < 30,
        ),
    ]  # fmt: skip


def overhead_cost(rows: list[dict[str, object]]) -> dict[str, object]:
    """What ``tara_gateway_overhead_seconds`` costs a streamed request, against its CPU.

    Measured in this process: one observation plus the clock reads the
    accounting adds: one after each upstream read (22 for a 20-chunk answer;
    the one before it the stream timer needs anyway) and two around the
    attempt.
    """
    metrics = MetricsRecorder(CollectorRegistry())
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        metrics.overhead("tara-tutor", "stable", True, 0.0003)
    observe = (time.perf_counter() - t0) / n
    clock = time.monotonic
    t0 = time.perf_counter()
    for _ in range(n):
        clock()
    reads = (time.perf_counter() - t0) / n * (22 + 2)
    cost_us = 1e6 * (observe + reads)
    cpu = next(
        (r for r in rows if str(r["point"]).startswith("streaming CPU per request, c=32")), None
    )
    per_request = float(str(cpu["gateway"]).split(" µs")[0].replace(",", "")) if cpu else 0.0
    share = 100 * cost_us / per_request if per_request else float("nan")
    return row(
        "tara_gateway_overhead_seconds: cost per streamed request (observe + clock reads)",
        f"{cost_us:.2f} µs = {share:.2f}% of its CPU at c=32",
        "",
        "< 1% CPU",
        share < 1,
    )


def stopped(stack: ExitStack, targets: list[Target]) -> None:
    """Stop the targets' processes (``SIGSTOP``) until the stack unwinds."""
    for t in targets:
        os.kill(t.pid, signal.SIGSTOP)
        # Registered after the servers: runs first, so they can take their SIGTERM.
        stack.callback(os.kill, t.pid, signal.SIGCONT)


def servers(stack: ExitStack, tmp: Path) -> Iterator[Target]:
    """Start the upstream, the gateways and the bare proxies; yield the targets."""
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    fake = [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(up_port)]
    up = stack.enter_context(child(["taskset", "-c", LOAD_CORE, *fake], f"{upstream}/models"))
    yield Target("direct", upstream, up.pid, "sk-sandbox")
    # The gateways' Redis is the bench's own, on the load core: in production it runs on
    # other machines, and on the servers' core its script calls took turns with the gateway.
    redis_url = stack.enter_context(private_redis(LOAD_CORE))
    namespace = f"tara-bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(seed_table(redis_url, namespace))
    probe = [sys.executable, str(ROOT / "bench" / "lagprobe.py")]
    for probed in (True, False):
        suffix = "" if probed else " (no probe)"
        port = free_port()
        lag = tmp / f"gateway-{probed}.jsonl"
        env = {
            "TARA_AUTH__CLIENT_KEYS": json.dumps([BENCH_KEY]),
            "TARA_AUTH__ADMIN_KEY": "sk-bench-admin",
            "TARA_REDIS_URL": redis_url,
            "TARA_REDIS_NAMESPACE": namespace,
            "TARA_UPSTREAM__BASE_URL": upstream,
            "TARA_TRACKS": tracks_env(),
            "TARA_TELEMETRY__SQLITE_PATH": str(tmp / f"interactions-{probed}.db"),
            "TARA_LOG_LEVEL": "WARNING",
        }
        cmd = (
            [*probe, str(lag), "gateway"]
            if probed
            else [str(Path(sys.executable).with_name("tara")), "serve"]
        )
        base = f"http://127.0.0.1:{port}"
        gw = stack.enter_context(
            child(
                ["taskset", "-c", SERVER_CORE, *cmd, "--port", str(port)], f"{base}/readyz", env=env
            )
        )
        yield Target("gateway" + suffix, f"{base}/v1", gw.pid, BENCH_KEY, lag if probed else None)
        for variant, label, flags in (
            ("starlette", "Starlette+aiohttp", ["--starlette"]),
            ("raw", "raw ASGI", []),
        ):
            port = free_port()
            lag = tmp / f"{variant}-{probed}.jsonl"
            args = ["--port", str(port), "--upstream", upstream, *flags]
            cmd = (
                [*probe, str(lag), "passthrough"]
                if probed
                else [sys.executable, str(ROOT / "bench" / "passthrough.py")]
            )
            base = f"http://127.0.0.1:{port}"
            pt = stack.enter_context(child(["taskset", "-c", SERVER_CORE, *cmd, *args], f"{base}/"))
            lag_file = lag if probed else None
            yield Target(variant + suffix, f"{base}/v1", pt.pid, "x", lag_file, label)


def main() -> int:
    """Run every point, print the rows, write ``bench/results/loop.json``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (2; quick 1)")
    parser.add_argument("--only", default="", help="comma list: sat,open,cpu,streams")
    parser.add_argument("--out", type=Path, default=RESULTS / "loop.json")
    parser.add_argument("--lag-dir", type=Path, default=None, help="keep the probe files here")
    parser.add_argument(
        "--open-rate",
        type=float,
        default=None,
        help="run only the open loop, at this many requests/s (both kinds)",
    )
    args = parser.parse_args()
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
    only = set(filter(None, args.only.split(",")))
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    bench = Bench(args.quick, rounds)
    rows: list[dict[str, object]] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tara-loop-") as tmp:
        lag_dir = args.lag_dir or Path(tmp)
        lag_dir.mkdir(parents=True, exist_ok=True)
        direct, gw, starlette, raw, gw_cpu, starlette_cpu, raw_cpu = servers(stack, lag_dir)
        bares, bares_cpu = [starlette, raw], [starlette_cpu, raw_cpu]
        for t in (direct, gw, gw_cpu, *bares, *bares_cpu):  # warm every path once
            bench.closed(t, SAT, False, 256, 1.0)
            bench.closed(t, SAT, True, 256, 1.0)
        if args.open_rate:
            only = {"open-only"}
        elif not only or only & {"sat", "open"}:
            sat_rows, sat_plain, sat_stream = saturation(bench, gw, bares)
            rows += sat_rows
        # Only the saturation point uses the probed servers: stopped from here on, their
        # probes (500 wake-ups a second each) no longer take turns on the servers' core.
        stopped(stack, [gw, *bares])
        # The streams come first: their RSS growth is measured on servers that have only
        # been warmed up (the open loop and the CPU points grow the heap past what the
        # streams need, and glibc keeps what was freed).
        if not only or "streams" in only:
            rows += open_streams(bench, gw_cpu, bares_cpu, direct)
        if args.open_rate:
            rates = {False: args.open_rate, True: args.open_rate}
            rows = open_loop(bench, gw_cpu, bares_cpu, direct, rates, steer=False)
            return _write(rows, args.out)
        if not only or "open" in only:
            rates = {
                stream: calibrated_rate(bench, gw_cpu, stream, 0.7 * sat)
                for stream, sat in ((False, sat_plain), (True, sat_stream))
            }
            rows += open_loop(bench, gw_cpu, bares_cpu, direct, rates)
        if not only or "cpu" in only:
            rows += request_cpu(bench, gw_cpu, bares_cpu)
        rows.append(overhead_cost(rows))
        base = gw_cpu.base.removesuffix("/v1")
        p99 = overhead_p99_ms(f"{base}/metrics")
        rows.append(
            row(
                "tara_gateway_overhead_seconds p99, the open-loop, stream and CPU points "
                "(gateway's own histogram)",
                f"≤ {p99:g} ms (bucket bound)", "", "(measured)", True,
            )
        )  # fmt: skip
    return _write(rows, args.out)


def _write(rows: list[dict[str, object]], out: Path) -> int:
    """Print the rows and write them to ``out``."""
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    write_results(out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
