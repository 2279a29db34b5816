"""Window stats in process memory, for one process (``tara demo``, ``tara serve`` alone).

Same layout and expiry rules as the Redis store, so the contract tests hold
for both; expired buckets are swept at most once a minute during writes.
The students a delta names (``stu:`` fields) go to a
:class:`~tara.telemetry.student_sketch.StudentSketch` per bucket, not to the counters.

Memory is bounded by ``memory_max_buckets`` (a busy bucket holds a 16 KiB
sketch): past it the oldest fine buckets go first, and reads of their time
fall back to the hourly rollups, as they do for fine buckets that expired
(``fine_evicted``: coarser, nothing lost); only when rollups alone fill the
bound do the oldest of them go (``memory_full``: their counts are lost).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

from tara.telemetry.interactions import OnDrop
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.student_sketch import StudentSketch
from tara.telemetry.window_fields import Family
from tara.telemetry.window_store import (
    CLOCK_SLACK,
    Deltas,
    Series,
    Tier,
    WindowLayout,
    check_deltas,
    merge_fields,
)
from tara.telemetry.windows import WindowStats

_STUDENT = Family.STUDENT.value + ":"

_SWEEP_EVERY = 60.0

_Bucket = tuple[Tier, Series, int]

EVICT_SHARE = 10
"""A full store evicts a tenth of its bound at a time (one sort per batch, not per write)."""


class MemoryWindowStore:
    """A :class:`~tara.telemetry.window_store.WindowStore` held in a dict."""

    def __init__(
        self,
        settings: TelemetryStatsSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_drop: OnDrop | None = None,
    ) -> None:
        settings = settings or TelemetryStatsSettings()
        self._layout = WindowLayout.from_settings(settings)
        self._max_buckets = settings.memory_max_buckets
        self._clock = clock
        self.on_drop: OnDrop = on_drop or (lambda reason, count: None)
        """Told ``(reason, buckets)`` for buckets evicted: ``fine_evicted`` or ``memory_full``."""
        self._buckets: dict[_Bucket, tuple[float, dict[str, float], StudentSketch]] = {}
        self._fine_floor: int | None = None
        """Start of the newest fine bucket evicted: fine buckets up to it read as expired."""
        self._swept = clock()

    def __len__(self) -> int:
        """Buckets held (fine and rollup)."""
        return len(self._buckets)

    @property
    def layout(self) -> WindowLayout:
        """Bucket sizes and lifetimes of this store."""
        return self._layout

    async def add(self, deltas: Deltas) -> None:
        """Add field increments to their fine and rollup buckets (all or, if refused, none)."""
        check_deltas(deltas)
        now = self._clock()
        for key, fields in deltas.items():
            counters = {k: v for k, v in fields.items() if not k.startswith(_STUDENT)}
            students = [k for k in fields if k.startswith(_STUDENT)]
            for tier, start, expires in self._layout.targets(key.bucket_start, now):
                bucket = (tier, key.series, start)
                entry = self._buckets.get(bucket)
                if entry is None or entry[0] <= now:
                    if tier == "f" and self._evicted(start):
                        continue  # its time reads from the rollup now
                    entry = (expires, {}, StudentSketch())
                    self._buckets[bucket] = entry
                merge_fields(entry[1], counters)
                for name in students:
                    entry[2].add(name)
        if now - self._swept >= _SWEEP_EVERY:
            self._sweep(now)
        if len(self._buckets) > self._max_buckets:
            self._shrink(now)

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
        stats, students = WindowStats(), StudentSketch()
        for tier, start in self._read_layout(now).plan(t0, t1, now):
            entry = self._buckets.get((tier, series, start))
            if entry is not None and entry[0] > now:
                stats.add_fields(entry[1])
                students.merge(entry[2])
        stats.students = students.count()
        return stats

    def _sweep(self, now: float) -> None:
        self._swept = now
        for bucket in [b for b, (expires, *_) in self._buckets.items() if expires <= now]:
            del self._buckets[bucket]

    def _evicted(self, start: int) -> bool:
        return self._fine_floor is not None and start <= self._fine_floor

    def _read_layout(self, now: float) -> WindowLayout:
        """The layout, with fine buckets up to the evicted ones counted as expired."""
        if self._fine_floor is None:
            return self._layout
        layout = self._layout
        # fine_expiry(floor) must fall at or before now + CLOCK_SLACK.
        left = now + CLOCK_SLACK - self._fine_floor - layout.bucket_seconds
        return dataclasses.replace(layout, fine_retention=min(layout.fine_retention, left))

    def _shrink(self, now: float) -> None:
        """Down to nine tenths of the bound: expired buckets, oldest fine ones, oldest rollups."""
        self._sweep(now)
        excess = len(self._buckets) - self._max_buckets
        if excess <= 0:
            return
        excess += self._max_buckets // EVICT_SHARE
        by_age = sorted(self._buckets, key=lambda b: (b[0] == "r", b[2]))[:excess]
        fine = [b for b in by_age if b[0] == "f"]
        for bucket in by_age:
            del self._buckets[bucket]
        if fine:
            newest = max(b[2] for b in fine)
            self._fine_floor = max(newest, self._fine_floor or newest)
            self.on_drop("fine_evicted", len(fine))
        if len(by_age) > len(fine):
            self.on_drop("memory_full", len(by_age) - len(fine))
