"""Window stats in process memory, for one process (``tara demo``, ``tara serve`` alone).

Same layout and expiry rules as the Redis store, so the contract tests hold
for both; expired buckets are swept at most once a minute during writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_store import (
    Deltas,
    Series,
    Tier,
    WindowLayout,
    check_deltas,
    merge_fields,
)
from tara.telemetry.windows import WindowStats

_SWEEP_EVERY = 60.0

_Bucket = tuple[Tier, Series, int]


class MemoryWindowStore:
    """A :class:`~tara.telemetry.window_store.WindowStore` held in a dict."""

    def __init__(
        self,
        settings: TelemetryStatsSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._layout = WindowLayout.from_settings(settings or TelemetryStatsSettings())
        self._clock = clock
        self._buckets: dict[_Bucket, tuple[float, dict[str, float]]] = {}
        self._swept = clock()

    @property
    def layout(self) -> WindowLayout:
        """Bucket sizes and lifetimes of this store."""
        return self._layout

    async def add(self, deltas: Deltas) -> None:
        """Add field increments to their fine and rollup buckets (all or, if refused, none)."""
        check_deltas(deltas)
        now = self._clock()
        for key, fields in deltas.items():
            for tier, start, expires in self._layout.targets(key.bucket_start, now):
                bucket = (tier, key.series, start)
                entry = self._buckets.get(bucket)
                if entry is None or entry[0] <= now:
                    entry = (expires, {})
                    self._buckets[bucket] = entry
                merge_fields(entry[1], fields)
        if now - self._swept >= _SWEEP_EVERY:
            self._sweep(now)

    async def ping(self) -> None:
        """Memory always answers."""

    async def read(
        self, track: str, segment: str, variant: str, t0: float, t1: float
    ) -> WindowStats:
        """Sum of the series' buckets in ``[t0, t1)``."""
        return self._read(Series(track, segment, variant), t0, t1, self._clock())

    async def read_many(
        self, series: Iterable[Series], t0: float, t1: float
    ) -> dict[Series, WindowStats]:
        """:meth:`read` for several series."""
        now = self._clock()
        return {s: self._read(Series(*s), t0, t1, now) for s in series}

    async def aclose(self) -> None:
        """Nothing to release."""

    def _read(self, series: Series, t0: float, t1: float, now: float) -> WindowStats:
        stats = WindowStats()
        for tier, start in self._layout.plan(t0, t1, now):
            entry = self._buckets.get((tier, series, start))
            if entry is not None and entry[0] > now:
                stats.add_fields(entry[1])
        return stats

    def _sweep(self, now: float) -> None:
        self._swept = now
        for bucket in [b for b, (expires, _) in self._buckets.items() if expires <= now]:
            del self._buckets[bucket]
