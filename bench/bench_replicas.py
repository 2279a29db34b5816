"""Scale out: how long a routing change takes to reach every one of four gateway processes.

Starts ``tara sandbox``, one ``tara controller`` and four ``tara serve``
processes on one Redis namespace (the defaults: each gateway polls the
routing table's version every 0.5 s). Then, ``--rounds`` times, it starts a
rollout through one gateway's admin API and rolls it back, and after each
change polls every gateway's ``/readyz`` every 5 ms until all four report
the new routing version. It prints, per change, the time from the admin
call's answer to the last replica switching, and writes the table rows to
``bench/results/replicas.json``.

Run: ``.venv/bin/python bench/bench_replicas.py`` (needs Redis on 127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import drop_namespace
from procs import ROOT, TARA, child
from table import write_results
from tara.serving import free_port

REPLICAS = 4
TRACK = "tara-tutor"
ADMIN = {"Authorization": "Bearer sk-bench-admin"}
GOAL_S = 1.0


def environment(upstream: str, namespace: str, data: Path) -> dict[str, str]:
    """Settings every process of the deployment shares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARA_")}
    return {
        **env,
        "TARA_UPSTREAM__BASE_URL": upstream,
        "TARA_AUTH__CLIENT_KEYS": json.dumps(["sk-bench-client"]),
        "TARA_AUTH__ADMIN_KEY": "sk-bench-admin",
        "TARA_TRACKS": json.dumps({TRACK: {"stable_model": "tara-stable"}}),
        "TARA_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TARA_REDIS_NAMESPACE": namespace,
        "TARA_TELEMETRY__SPOOL_PATH": str(data / "spool.jsonl"),
        "TARA_LOG_LEVEL": "WARNING",
    }


async def version(session: aiohttp.ClientSession, base: str) -> int:
    """The routing version a gateway serves now."""
    async with session.get(f"{base}/readyz") as resp:
        body: dict[str, Any] = await resp.json()
    return int(body["routing_table"]["version"])


async def propagation(session: aiohttp.ClientSession, bases: list[str], old: int) -> float:
    """Seconds until every gateway serves a version other than ``old``."""
    start = time.perf_counter()
    waiting = set(bases)
    while waiting:
        seen = await asyncio.gather(*(version(session, b) for b in waiting))
        waiting = {b for b, v in zip(list(waiting), seen, strict=True) if v == old}
        if waiting:
            await asyncio.sleep(0.005)
    return time.perf_counter() - start


async def measure(bases: list[str], rounds: int) -> list[float]:
    """Start and roll back a rollout ``rounds`` times; each change's propagation time."""
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            old = await version(session, bases[0])
            async with session.post(
                f"{bases[0]}/admin/rollouts",
                json={"track": TRACK, "candidate": "tara-candidate-good"},
                headers=ADMIN,
            ) as resp:
                assert resp.status == 201, await resp.text()
                rollout = (await resp.json())["id"]
            times.append(await propagation(session, bases, old))
            old = await version(session, bases[0])
            async with session.post(
                f"{bases[0]}/admin/rollouts/{rollout}/rollback",
                json={"reason": "bench"},
                headers=ADMIN,
            ) as resp:
                assert resp.status == 200, await resp.text()
            times.append(await propagation(session, bases, old))
    return times


def table_rows(times: list[float]) -> list[dict[str, Any]]:
    """The rows of ``bench/results/replicas.json``."""
    worst, median = max(times), statistics.median(times)
    return [
        {
            "point": f"routing change reaches all of {REPLICAS} gateway processes "
            f"(one controller, one Redis; {len(times)} changes)",
            "gateway": f"max {1000 * worst:.0f} ms, median {1000 * median:.0f} ms",
            "bare": "",
            "goal": f"< {GOAL_S:.0f} s",
            "holds": worst < GOAL_S,
        }
    ]


def main() -> int:
    """Run the deployment, measure, print and save."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rollouts started and rolled back")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results" / "replicas.json"
    )
    args = parser.parse_args()
    namespace = f"tara-bench-{uuid.uuid4().hex[:8]}"
    sb_port = free_port()
    upstream = f"http://127.0.0.1:{sb_port}/v1"
    try:
        with tempfile.TemporaryDirectory(prefix="tara-replicas-") as tmp, ExitStack() as stack:
            env = environment(upstream, namespace, Path(tmp))
            stack.enter_context(
                child([TARA, "sandbox", "--port", str(sb_port)], f"{upstream}/models")
            )
            ctl = free_port()
            stack.enter_context(
                child(
                    [TARA, "controller"],
                    f"http://127.0.0.1:{ctl}/readyz",
                    env={**env, "TARA_ROLLOUT__CONTROLLER_PORT": str(ctl)},
                )
            )
            bases = []
            for _ in range(REPLICAS):
                port = free_port()
                log = {"TARA_TELEMETRY__SQLITE_PATH": str(Path(tmp) / f"log-{port}.db")}
                bases.append(f"http://127.0.0.1:{port}")
                stack.enter_context(
                    child(
                        [TARA, "serve", "--port", str(port)],
                        f"{bases[-1]}/readyz",
                        env={**env, **log},
                        ready_timeout=60,
                    )
                )
            time.sleep(3)  # the controller takes the lease
            times = asyncio.run(measure(bases, args.rounds))
    finally:
        asyncio.run(drop_namespace(namespace))
    print("propagation to every replica (ms):", ", ".join(f"{1000 * t:.0f}" for t in times))
    rows = table_rows(times)
    for row in rows:
        print(f"{row['point']}: {row['gateway']} (goal {row['goal']}, holds: {row['holds']})")
    write_results(args.results, rows)
    return 0 if all(r["holds"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
