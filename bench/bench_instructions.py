"""CPU cost per request that a shared machine cannot blur: instructions and system calls.

``bench_gateway.py`` measures CPU seconds, which on a shared 2-core VM move by
±20% from one run to the next, more than most changes being judged. This
script counts instead, for the pass-through proxy and the gateway:

- **instructions per request** (valgrind's callgrind, every thread of the
  server, counted only while the measured requests run and one telemetry
  flush completes): the same code on the same input gives the same count
  within ~2% (batch sizes follow timing), whatever else the machine does;
- with ``--syscalls``, **system calls per request** (``strace -f -c``, two
  runs of different length, so start-up cancels out): what instruction
  counts miss, such as threads trading the GIL (futex) or a system call
  per request for randomness or the running loop.

Targets and traffic are those of ``bench_gateway.py`` (Redis routing table
with a 10% canary, the whole telemetry pipeline) at 32 concurrent requests.
Under valgrind a request takes tens of milliseconds, so the gateway's
disconnect watcher (a timer for the first 20 ms) is set to start after 5 s
here; at full speed almost no request lives long enough to start it.

``--stream`` asks for streamed answers, so the SSE relay is measured too.
``--paced MS`` serves them from ``bench/fake_upstream.py`` instead of the
sandbox: 20 chunks spread over ``MS`` milliseconds (the sandbox sends a whole
answer at once), so each chunk is read, tapped and sent on its own, as in
``bench_loop.py``'s streaming CPU point (20 chunks over 20 ms there; under
valgrind a server is ~50x slower, so a few hundred ms keeps chunks apart).
``--concurrency`` sets the requests in flight (32).

The Starlette + aiohttp pass-through (issue 16's reference) is the base of
the ratio column; the raw-ASGI one is the thinnest proxy there is.

Run: ``.venv/bin/python bench/bench_instructions.py [--stream | --paced 400] [--syscalls]`` (needs
valgrind, strace for ``--syscalls``, Redis, and PostgreSQL for the
``pg log`` row when ``--pg`` names it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import BENCH_KEY, TRACK, drop_namespace, gateway_env, seed_table
from loadgen import QUESTIONS, new_students, question_bodies, run_load
from procs import ROOT, TARA, child, wait_http
from tara.serving import free_port

WARM_UP = 300
"""Requests before counting starts (connections, caches, lazily built state)."""


@dataclass
class Target:
    """A server to measure: its command and environment for a given port."""

    name: str
    command: Callable[[int, str], list[str]]
    env: dict[str, str]
    model: str
    key: str
    ready_path: str


def targets(
    upstream: str, data: Path, pg: str | None, namespace: str, watch_after: float = 5.0
) -> list[Target]:
    """The pass-through and the gateway variants."""
    env = {
        **gateway_env(upstream, namespace, data / "interactions.db"),
        "TARA_LOG_LEVEL": "INFO",  # kept in the server's log file
        "TARA_SERVER__DISCONNECT_WATCH_AFTER": str(watch_after),
    }

    def gateway(port: int, _upstream: str) -> list[str]:
        return [TARA, "serve", "--port", str(port)]

    def passthrough(port: int, upstream: str) -> list[str]:
        script = str(ROOT / "bench" / "passthrough.py")
        return [sys.executable, script, "--port", str(port), "--upstream", upstream]

    def starlette(port: int, upstream: str) -> list[str]:
        return [*passthrough(port, upstream), "--starlette"]

    found = [
        Target("Starlette+aiohttp pass-through", starlette, {}, "bench-fast", "x", "/"),
        Target("raw ASGI pass-through", passthrough, {}, "bench-fast", "x", "/"),
        Target("gateway, SQLite log", gateway, env, TRACK, BENCH_KEY, "/readyz"),
    ]
    if pg:
        pg_env = {**env, "TARA_DATABASE_URL": pg}
        found.append(
            Target("gateway, PostgreSQL log", gateway, pg_env, TRACK, BENCH_KEY, "/readyz")
        )
    log_off = {**env, "TARA_TELEMETRY__CAPTURE": "off"}
    found.append(Target("gateway, log off", gateway, log_off, TRACK, BENCH_KEY, "/readyz"))
    return found


@dataclass(frozen=True)
class Traffic:
    """What is sent: streamed answers or not, and how many requests in flight."""

    stream: bool
    concurrency: int = 32


async def drive(url: str, model: str, key: str, count: int, traffic: Traffic) -> int:
    """``count`` requests; returns how many were not 200."""
    stream = traffic.stream
    bodies = question_bodies(model, stream=stream)
    result = await run_load(
        url,
        lambda i: bodies[i % QUESTIONS],
        new_students(key),
        concurrency=traffic.concurrency,
        count=count,
        stream=stream,
    )
    return sum(n for status, n in result.statuses.items() if status != 200)


def run_under(
    wrapper: list[str],
    target: Target,
    upstream: str,
    count: int,
    counting: tuple[str, str] | None,
    log: Path,
    traffic: Traffic,
) -> None:
    """Run ``target`` under ``wrapper``, warm it up, drive ``count`` requests, stop it.

    The server's output goes to ``log``; its tail is shown if it fails to stop.
    """
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*wrapper, *target.command(port, upstream)],
            env={**os.environ, **target.env},
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        wait_http(f"http://127.0.0.1:{port}{target.ready_path}", timeout=300)
        asyncio.run(drive(url, target.model, target.key, WARM_UP, traffic))
        time.sleep(1.5)  # the warm-up's telemetry is flushed before counting starts
        if counting:
            subprocess.run(["callgrind_control", counting[0], str(proc.pid)], check=True)
        bad = asyncio.run(drive(url, target.model, target.key, count, traffic))
        time.sleep(1.5)  # one telemetry flush of what was measured
        if counting:
            subprocess.run(["callgrind_control", counting[1], str(proc.pid)], check=True)
            subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True)
        if bad:
            msg = f"{target.name}: {bad} requests failed"
            raise RuntimeError(msg)
    finally:
        # valgrind runs the server in its own process; strace would detach and
        # leave it running, so the server itself (strace's child) is told to stop.
        if wrapper[0] == "strace":
            subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)], check=False)
        else:
            proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)], check=False)
            proc.kill()
            tail = log.read_text(errors="replace").splitlines()[-20:]
            msg = f"{target.name} did not stop within 120 s of SIGTERM; its log ends:\n"
            raise RuntimeError(msg + "\n".join(tail)) from None


def instructions(target: Target, upstream: str, count: int, work: Path, traffic: Traffic) -> float:
    """Instructions per request, counted by callgrind."""
    slug = re.sub(r"\W+", "-", target.name).strip("-")
    out = work / f"callgrind.{slug}.{uuid.uuid4().hex[:6]}"
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    log = work / f"server-{out.name}.log"
    run_under(wrapper, target, upstream, count, ("--instr=on", "--instr=off"), log, traffic)
    total = 0
    for dump in work.glob(f"{out.name}*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total / count


def syscalls(
    target: Target, upstream: str, counts: tuple[int, int], work: Path, traffic: Traffic
) -> dict[str, float]:
    """System calls per request by name: the difference of two runs of different length."""
    tallies = []
    for count in counts:
        out = work / f"strace.{uuid.uuid4().hex[:6]}"
        log = work / f"server-{out.name}.log"
        strace = ["strace", "-f", "-c", "-o", str(out)]
        run_under(strace, target, upstream, count, None, log, traffic)
        tally: dict[str, int] = {}
        for line in out.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
                tally[fields[-1]] = int(fields[3])
        tallies.append(tally)
    short, long = tallies
    n = counts[1] - counts[0]
    per = {name: (long.get(name, 0) - short.get(name, 0)) / n for name in long}
    return {name: v for name, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def main() -> int:
    """Count and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="measured requests (2,000)")
    parser.add_argument("--syscalls", action="store_true", help="also count system calls")
    parser.add_argument("--pg", default=None, help="PostgreSQL URL for a 'PostgreSQL log' row")
    parser.add_argument("--stream", action="store_true", help="streamed answers (SSE relay)")
    parser.add_argument(
        "--only", default=None, help="measure only the targets whose name contains this"
    )
    parser.add_argument(
        "--paced", type=float, default=None, metavar="MS",
        help="stream from bench/fake_upstream.py: 20 chunks over MS milliseconds",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=32, help="in flight (32)")
    parser.add_argument(
        "--watch-after",
        type=float,
        default=5.0,
        help="the gateway's server.disconnect_watch_after (5 s here, 0.02 by default: "
        "streams that outlive it start a disconnect watcher, as long streams do in production)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy callgrind's files here (callgrind_annotate)"
    )
    args = parser.parse_args()

    sb_port = free_port()
    upstream = f"http://127.0.0.1:{sb_port}/v1"
    namespace = f"tara-bench-{uuid.uuid4().hex[:8]}"
    models = str(ROOT / "bench" / "sandbox-models.toml")
    sandbox = [TARA, "sandbox", "--port", str(sb_port), "--seed", "1", "--models", models]
    if args.paced is not None:
        fake = [sys.executable, str(ROOT / "bench" / "fake_upstream.py"), "--port", str(sb_port)]
        sandbox = [*fake, "--ttft-ms", "0", "--chunks", "20", "--stream-ms", str(args.paced)]
    asyncio.run(seed_table(namespace))
    lines = [
        "| target | instructions/request | vs Starlette+aiohttp | vs raw ASGI |",
        "|---|---|---|---|",
    ]
    calls: list[str] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="tara-instr-") as tmp,
            child(sandbox, f"{upstream}/models"),
        ):
            work = Path(tmp)
            traffic = Traffic(args.stream or args.paced is not None, args.concurrency)
            bases: dict[str, float] = {}
            for target in targets(upstream, work, args.pg, namespace, args.watch_after):
                if args.only and args.only not in target.name:
                    continue
                per_request = instructions(target, upstream, args.requests, work, traffic)
                if "pass-through" in target.name:
                    bases[target.name.split()[0]] = per_request
                ratios = " | ".join(
                    f"{per_request / bases[b]:.2f}x" if b in bases else "-"
                    for b in ("Starlette+aiohttp", "raw")
                )
                lines.append(f"| {target.name} | {per_request:,.0f} | {ratios} |")
                print(lines[-1], flush=True)
                if args.syscalls:
                    counts = (1000, 1000 + args.requests)
                    per = syscalls(target, upstream, counts, work, traffic)
                    shown = ", ".join(f"{name} {v:.2f}" for name, v in per.items())
                    calls.append(f"- {target.name}: {shown}")
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for kept in work.glob("callgrind.*"):
                    shutil.copy(kept, args.keep / kept.name)
    finally:
        asyncio.run(drop_namespace(namespace))
    print("\n".join(lines))
    if calls:
        print("\nSystem calls per request:\n" + "\n".join(calls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
