"""Run a benchmarked server with an event-loop lag probe inside it.

``python bench/lagprobe.py OUT.jsonl gateway --port P`` runs ``tara serve``
(``passthrough --port P --upstream U`` runs the bare proxy) with a task on
its event loop that asks to wake every 2 ms and notes how late it woke: the
time some callback held the loop. Once a second it appends
``{"t", "n", "max_ms", "p99_ms"}`` to ``OUT.jsonl``. The probe itself costs
about 1% of a core, so CPU figures are taken from runs without it.

``TARA_BENCH_WITHOUT=detector,index`` (any of ``detector``, ``index``,
``window``, ``log``) makes those telemetry sinks of the probed gateway drop
every record unseen: what the tail looks like without a sink's work tells
how much of it is that sink's (``docs/benchmarks.md``, what held the loop).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tara.cli
import tara.gateway.server
from tara.serving import serve_forever

PERIOD = 0.002
"""How often the probe asks to wake (seconds)."""


async def probe(out: Path) -> None:
    """Measure how late the loop wakes the probe; one line of stats per second."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    second = time.monotonic() + 1
    with out.open("a") as file:
        while True:
            t0 = loop.time()
            await asyncio.sleep(PERIOD)
            lags.append(loop.time() - t0 - PERIOD)
            if STALLS is not None:
                STALLS.beat = time.monotonic()
            if time.monotonic() >= second:
                second += 1
                lags.sort()
                row = {
                    "t": time.time(),
                    "n": len(lags),
                    "max_ms": 1000 * lags[-1],
                    "p99_ms": 1000 * lags[int(0.99 * (len(lags) - 1))],
                    "gc_young": gc.get_count()[0],
                }
                file.write(json.dumps(row) + "\n")
                file.flush()
                lags.clear()


class StallWatch:
    """With ``TARA_BENCH_STALLS=1``: what held the loop, and how long each GC took.

    A thread checks every millisecond when the probe last woke; once that is
    over ``TARA_BENCH_STALL_MS`` (20) ago it samples the loop thread's stack (the GIL is handed over
    every 5 ms, so it gets to look). At exit it writes the most frequent
    stacks and the garbage collections over 5 ms to ``OUT.stalls.txt``.
    """

    def __init__(self, out: Path) -> None:
        self.out = out.with_suffix(".stalls.txt")
        self.beat = time.monotonic()
        self.stacks: collections.Counter[str] = collections.Counter()
        self.gcs: list[tuple[int, float]] = []
        self.all_gcs: list[tuple[int, float, int]] = []
        """Every collection: generation, seconds, objects collected (cyclic garbage)."""
        self._gc_start = 0.0
        self.loop_thread = threading.get_ident()
        self.threshold = float(os.environ.get("TARA_BENCH_STALL_MS", "20")) / 1000
        gc.callbacks.append(self._on_gc)
        threading.Thread(target=self._watch, daemon=True).start()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_start
            self.all_gcs.append((info["generation"], took, info["collected"]))
            if took > 0.005 or info["generation"] == 2:
                self.gcs.append((info["generation"], took))

    def _watch(self) -> None:
        while True:
            time.sleep(0.001)
            if time.monotonic() - self.beat > self.threshold:
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    stack = traceback.format_stack(frame, limit=12)
                    self.stacks["".join(stack[-8:])] += 1

    def dump(self) -> None:
        """Write what was seen."""
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
        )
        with self.out.open("w") as file:
            full = [round(t * 1000, 1) for g, t in self.gcs if g == 2]
            file.write(f"GC over 5 ms: {len(self.gcs)}; longest: {sorted(self.gcs)[-10:]}\n")
            file.write(f"full collections (ms): {full}; objects tracked: {len(gc.get_objects())}\n")
            file.write(f"cyclic garbage left at exit: {len(gc.garbage)}\n")
            for gen in range(3):
                took = sorted(t * 1000 for g, t, _ in self.all_gcs if g == gen)
                freed = sum(n for g, _, n in self.all_gcs if g == gen)
                if took:
                    median, p90 = took[len(took) // 2], took[int(0.9 * (len(took) - 1))]
                    file.write(
                        f"generation {gen}: {len(took)} collections, median {median:.2f} ms,"
                        f" p90 {p90:.2f} ms, max {took[-1]:.2f} ms, {freed} objects collected\n"
                    )
            for name, n in garbage.most_common(40):
                file.write(f"  {n:8d} {name}\n")
            for stack, n in self.stacks.most_common(15):
                file.write(f"--- {n} samples\n{stack}\n")


STALLS: StallWatch | None = None


class Probed:
    """An ASGI app with the probe started at the first lifespan event."""

    def __init__(self, app: Any, out: Path) -> None:
        self.app = app
        self.out = out
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.task is None:
            global STALLS
            if os.environ.get("TARA_BENCH_STALLS") == "1":
                STALLS = StallWatch(self.out)
            self.task = asyncio.get_running_loop().create_task(probe(self.out))
        await self.app(scope, receive, send)


def without_sinks(names: str) -> None:
    """Make the named telemetry sinks drop every record (``TARA_BENCH_WITHOUT``)."""
    from tara.telemetry.log_writer import InteractionLogWriter
    from tara.telemetry.request_index_redis import RedisRequestIndex
    from tara.telemetry.user_retries import UserRetryDetector
    from tara.telemetry.window_recorder import WindowRecorder

    sinks: dict[str, type[Any]] = {
        "detector": UserRetryDetector,
        "index": RedisRequestIndex,
        "window": WindowRecorder,
        "log": InteractionLogWriter,
    }
    for name in filter(None, names.split(",")):
        sinks[name].record = lambda _self, _interaction: None


def main() -> None:
    """``lagprobe.py OUT {gateway|passthrough} ARGS...``."""
    out, kind, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    serve = serve_forever

    def probed_serve(app: Any, host: str, port: int, *args: Any, **kwargs: Any) -> None:
        serve(Probed(app, out), host, port, *args, **kwargs)
        if STALLS is not None:
            STALLS.dump()

    if kind == "gateway":
        without_sinks(os.environ.get("TARA_BENCH_WITHOUT", ""))
        tara.gateway.server.serve_forever = probed_serve  # type: ignore[assignment]
        sys.argv = ["tara", "serve", *args]
        raise SystemExit(tara.cli.main())
    import passthrough

    passthrough.serve_forever = probed_serve  # type: ignore[assignment]
    sys.argv = ["passthrough", *args]
    passthrough.main()


if __name__ == "__main__":
    main()
