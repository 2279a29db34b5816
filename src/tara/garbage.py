"""When a long-running server collects cyclic garbage: rarely, and never by surprise.

Under load the gateway makes almost no cyclic garbage: a finished request is
freed by reference counting alone (``tests/gateway/test_gateway_garbage.py``).
Python's automatic collector still ran about once a second at 2,465 requests
a second, triggered by the objects of requests in flight and of telemetry
waiting for its flush, and each young collection held the event loop ~9 ms
(middle ones ~30 ms) to find nothing: 45 collections freed 29 objects in
``bench/lagprobe.py``'s open-loop run. Those stalls were the largest part of
the gateway's added p99 below saturation (issue 16).

So servers switch automatic collection off and a :class:`CalmCollector`
thread collects instead:

- when ``growth_limit`` more objects are alive than at the last collection
  (``gc.get_count()``, checked every ``check_every`` seconds), the bound on
  garbage that piles up if some path does make cycles (an error storm);
- and at least every ``interval`` seconds, so cycles from rare paths do not
  wait for the limit.

Each collection is a full one: it traverses every object created since
start-up (the start-up heap is frozen out of it), so it costs what the
requests in flight and the telemetry waiting to be flushed hold: up to
~18 ms at 2,465 requests a second, once in minutes instead of ~10 ms every
second.
Collections are counted in ``python_gc_collections_total`` as before.
"""

from __future__ import annotations

import gc
import threading
import time

GC_INTERVAL = 300.0
"""Seconds between full collections at most (``server.gc_interval``)."""
GC_GROWTH_LIMIT = 250_000
"""Objects allocated since the last collection and still alive that trigger one now
(``server.gc_growth_limit``); the gateway's own peak at 2,465 requests a second was ~140,000."""
CHECK_EVERY = 0.5
"""Seconds between looks at the allocation count (a few microseconds each)."""


class CalmCollector:
    """A daemon thread that runs the full collections automatic collection no longer does."""

    def __init__(
        self,
        interval: float = GC_INTERVAL,
        growth_limit: int = GC_GROWTH_LIMIT,
        *,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self.interval = interval
        self.growth_limit = growth_limit
        self.check_every = min(check_every, interval)
        self.collections = 0
        """Collections this collector ran."""
        self.collected = 0
        """Unreachable objects they found."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tara-gc", daemon=True)

    def start(self) -> CalmCollector:
        """Start checking; returns ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (waits for a collection in progress)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def due(self, grown: int, since_last: float) -> bool:
        """Whether to collect now, ``grown`` objects and ``since_last`` seconds after the last."""
        return grown >= self.growth_limit or since_last >= self.interval

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.check_every):
            now = time.monotonic()
            if self.due(gc.get_count()[0], now - last):
                self.collected += gc.collect()
                self.collections += 1
                last = time.monotonic()


def tune_gc(interval: float = GC_INTERVAL, growth_limit: int = GC_GROWTH_LIMIT) -> CalmCollector:
    """Set the collector up for a long-running server; the thread that now collects.

    Everything alive now (modules, settings, the app) is frozen out of future
    collections, automatic collection is switched off, and a
    :class:`CalmCollector` collects every ``interval`` seconds or after
    ``growth_limit`` objects (module docstring).
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    return CalmCollector(interval, growth_limit).start()
