"""Memory soak: streaming requests at full load for half an hour, the gateway's RSS over time.

Starts ``tara sandbox`` (answers at once) and one ``tara serve`` on the
embedded defaults (state in process memory, SQLite interaction log in a
temporary directory, every bound at its default), then keeps ``--concurrency``
streaming requests in flight for ``--minutes`` (30 by default). Every
request comes from a student and asks a question nobody asked before (the
worst case for the request index and the user-retry memory: nothing repeats,
everything is remembered until its bound). The gateway's RSS is sampled every
``--sample-seconds``; at the end the bench prints the series, the peak, the
requests and errors, and the gateway's overflow counters (what each bound
dropped), and writes

* ``bench/results/soak.json``: rows for the benchmarks table (peak RSS against
  the 150 MiB goal, errors);
* ``bench/soak_series.json``: the RSS series and the counters.

``--tracemalloc`` runs the gateway under ``bench/traced_serve.py`` and saves
its 25 largest allocation sites at the end (slower; for finding growth).

Run: ``.venv/bin/python bench/bench_soak.py`` (``--minutes 3`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import chat_body, new_students, run_load
from procs import ROOT, TARA, child
from table import write_results
from tara.serving import free_port

TRACK = "tara-tutor"
RSS_GOAL_MIB = 150.0
OVERFLOW_METRICS = ("tara_telemetry_dropped_total", "tara_interactions_dropped_total")
"""Counters of records a bound dropped (by part and reason)."""


def rss_mib(pid: int) -> float:
    """The process's resident set size now (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak_env(upstream: str, data: Path) -> dict[str, str]:
    """The embedded defaults, but for where the upstream and the log file are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARA_")}
    env.update(
        {
            "TARA_UPSTREAM__BASE_URL": upstream,
            "TARA_TRACKS": json.dumps({TRACK: {"stable_model": "bench-fast"}}),
            "TARA_TELEMETRY__SQLITE_PATH": str(data / "interactions.db"),
            "TARA_TELEMETRY__SPOOL_PATH": str(data / "spool.jsonl"),
            "TARA_LOG_LEVEL": "WARNING",
            "TARA_SOAK_TRACEMALLOC_OUT": str(data / "tracemalloc.json"),
        }
    )
    return env


def unique_bodies(slice_no: int) -> Any:
    """Request ``i`` of a slice asks a question no earlier request asked."""

    def body(i: int) -> bytes:
        return chat_body(TRACK, True, f"Soak question {slice_no}-{i}: what is {i} times 8?")

    return body


async def overflow(base: str) -> dict[str, float]:
    """The gateway's drop counters, ``name{labels}`` → value."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in OVERFLOW_METRICS and s.value:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
    return out


async def soak(
    base: str, pid: int, minutes: float, concurrency: int, sample_every: float
) -> dict[str, Any]:
    """Drive the gateway in one-minute slices while sampling its RSS."""
    url = f"{base}/v1/chat/completions"
    start = time.monotonic()
    end = start + 60 * minutes
    series: list[tuple[float, float, int]] = [(0.0, rss_mib(pid), 0)]
    done = {"requests": 0, "errors": 0}

    async def sample() -> None:
        while True:
            await asyncio.sleep(sample_every)
            series.append((round(time.monotonic() - start, 1), rss_mib(pid), done["requests"]))

    sampler = asyncio.create_task(sample())
    slice_no = 0
    try:
        while (left := end - time.monotonic()) > 1:
            slice_no += 1
            result = await run_load(
                url,
                unique_bodies(slice_no),
                new_students("sk-tara-dev"),
                concurrency=concurrency,
                duration=min(60.0, left),
                stream=True,
            )
            done["requests"] += sum(result.statuses.values())
            done["errors"] += sum(n for s, n in result.statuses.items() if s != 200)
            print(
                f"{(time.monotonic() - start) / 60:5.1f} min: {done['requests']:,} requests, "
                f"{result.rps:,.0f}/s, RSS {rss_mib(pid):.1f} MiB",
                flush=True,
            )
    finally:
        sampler.cancel()
    series.append((round(time.monotonic() - start, 1), rss_mib(pid), done["requests"]))
    return {
        "minutes": minutes,
        "concurrency": concurrency,
        "requests": done["requests"],
        "errors": done["errors"],
        "rps": done["requests"] / (time.monotonic() - start),
        "rss_start_mib": series[0][1],
        "rss_peak_mib": max(r for _, r, _ in series),
        "rss_end_mib": series[-1][1],
        "overflow": await overflow(base),
        "series": [{"t_s": t, "rss_mib": r, "requests": n} for t, r, n in series],
    }


def table_rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    """The soak's rows in the shape of ``bench/results/*.json``."""
    minutes = out["minutes"]
    peak = out["rss_peak_mib"]
    return [
        {
            "point": f"streaming soak, {minutes:g} min at full load (c={out['concurrency']}), "
            "embedded defaults: peak RSS",
            "gateway": f"{peak:.0f} MiB (start {out['rss_start_mib']:.0f}, "
            f"end {out['rss_end_mib']:.0f})",
            "bare": "",
            "goal": f"< {RSS_GOAL_MIB:.0f} MiB",
            "holds": peak < RSS_GOAL_MIB,
        },
        {
            "point": f"streaming soak, {minutes:g} min: requests, errors",
            "gateway": f"{out['requests']:,} ({out['rps']:,.0f}/s), {out['errors']} errors",
            "bare": "",
            "goal": "0 errors",
            "holds": out["errors"] == 0 and out["requests"] > 0,
        },
    ]


def main() -> int:
    """Run the soak, print and save its results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak (30)")
    parser.add_argument("--concurrency", type=int, default=64, help="streams in flight (64)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="RSS sampling (10)")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the gateway's heap")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TARA_X=VALUE",
        help="a setting to change from the defaults (repeatable), e.g. to try a bound",
    )
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results" / "soak.json", help="table rows"
    )
    parser.add_argument(
        "--series", type=Path, default=ROOT / "bench" / "soak_series.json", help="RSS series"
    )
    args = parser.parse_args()
    sb_port, gw_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{sb_port}/v1"
    base = f"http://127.0.0.1:{gw_port}"
    models = str(ROOT / "bench" / "sandbox-models.toml")
    sandbox = [TARA, "sandbox", "--port", str(sb_port), "--seed", "1", "--models", models]
    serve = [TARA, "serve"]
    if args.tracemalloc:
        serve = [sys.executable, str(ROOT / "bench" / "traced_serve.py")]
    with tempfile.TemporaryDirectory(prefix="tara-soak-") as tmp:
        data = Path(tmp)
        env = soak_env(upstream, data)
        env.update(item.split("=", 1) for item in args.set)  # type: ignore[misc]
        with (
            child(sandbox, f"{upstream}/models"),
            child([*serve, "--port", str(gw_port)], f"{base}/readyz", env=env) as gw,
        ):
            out = asyncio.run(
                soak(base, gw.pid, args.minutes, args.concurrency, args.sample_seconds)
            )
            if args.tracemalloc:
                gw.send_signal(signal.SIGUSR1)
                traced = data / "tracemalloc.json"
                for _ in range(120):  # a snapshot of a large heap takes a while
                    time.sleep(1)
                    if traced.exists():
                        time.sleep(1)
                        out["tracemalloc"] = json.loads(traced.read_text())
                        break
    rows = table_rows(out)
    for row in rows:
        print(f"{row['point']}: {row['gateway']} (goal {row['goal']}, holds: {row['holds']})")
    for name, value in out["overflow"].items():
        print(f"  overflow {name} = {value:,.0f}")
    write_results(args.results, rows)
    args.series.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if all(r["holds"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
