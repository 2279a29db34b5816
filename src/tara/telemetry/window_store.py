"""Where window stats are kept: the ``WindowStore`` protocol and its bucket layout.

A store holds one additive field hash (see :meth:`WindowStats.to_fields`) per
``(track, segment, variant, bucket)``. Replicas add deltas; readers sum the
buckets of a time range, so stats from every replica merge by construction.

Buckets come in two tiers (see :mod:`tara.telemetry.stats_config` for why):
fine buckets of ``bucket_seconds`` and rollups of ``rollup_seconds``. Every
delta goes to both. :meth:`WindowLayout.plan` picks, for a read of
``[t0, t1)``, the rollups that lie wholly inside the range and the fine
buckets at its edges. A read counts exactly the fine buckets that overlap
``[t0, t1)``: the bucket holding ``t0`` too, so a decision early in a stage
sees every request since the stage began (and up to one bucket, 10 s, from
before it). Where an edge's fine buckets have already expired, that edge
falls back to rollup resolution.

A store refuses a delta it cannot apply (a non-finite number, a name it
cannot encode) as a whole, before applying any of it, so the recorder can
split the batch and keep everything but the bad bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.windows import WindowStats

Tier = Literal["f", "r"]
"""``f``: fine bucket; ``r``: rollup bucket."""

CLOCK_SLACK = 60.0
"""A fine bucket this close to expiry is read from its rollup instead: replica
and Redis clocks differ a little, and a rollup is never wrong, only coarser."""


class Series(NamedTuple):
    """One line of stats: a variant of a segment of a track."""

    track: str
    segment: str
    variant: str


class WindowKey(NamedTuple):
    """A fine bucket of one series; ``bucket_start`` is aligned to ``bucket_seconds``."""

    track: str
    segment: str
    variant: str
    bucket_start: int

    @property
    def series(self) -> Series:
        """The series this bucket belongs to."""
        return Series(self.track, self.segment, self.variant)


Deltas = Mapping[WindowKey, Mapping[str, float]]
"""Field increments per fine bucket, as the recorder flushes them."""


def bucket_start(t: float, size: int) -> int:
    """Start of the ``size``-second bucket holding time ``t``."""
    return int(t // size) * size


def check_deltas(deltas: Deltas) -> None:
    """Raise ``ValueError`` naming the first non-finite increment (no store can add it)."""
    for key, fields in deltas.items():
        for name, value in fields.items():
            if not math.isfinite(value):
                msg = f"window delta {name}={value!r} for {key} is not a finite number"
                raise ValueError(msg)


def merge_fields(into: dict[str, float], fields: Mapping[str, float]) -> None:
    """Add a field mapping into another, in place."""
    for name, value in fields.items():
        into[name] = into.get(name, 0) + value


@dataclass(frozen=True, slots=True)
class WindowLayout:
    """Bucket sizes and lifetimes; decides which buckets a write or a read touches."""

    bucket_seconds: int = 10
    rollup_seconds: int = 3600
    fine_retention: float = 2 * 86_400.0
    retention: float = 15 * 86_400.0

    @classmethod
    def from_settings(cls, settings: TelemetryStatsSettings) -> WindowLayout:
        """The layout the settings describe."""
        return cls(
            settings.bucket_seconds,
            settings.rollup_seconds,
            settings.fine_retention_seconds,
            settings.retention_seconds,
        )

    @property
    def rollups(self) -> bool:
        """Whether a second, coarser tier exists."""
        return self.rollup_seconds > self.bucket_seconds

    def fine_expiry(self, start: int) -> float:
        """When the fine bucket starting at ``start`` is dropped."""
        return start + self.bucket_seconds + self.fine_retention

    def targets(self, start: int, now: float) -> list[tuple[Tier, int, float]]:
        """``(tier, bucket start, expires at)`` of every live bucket a delta at ``start`` feeds."""
        out: list[tuple[Tier, int, float]] = []
        fine_exp = self.fine_expiry(start)
        if not self.rollups:
            fine_exp = start + self.bucket_seconds + self.retention
        if fine_exp > now:
            out.append(("f", start, fine_exp))
        if self.rollups:
            r = bucket_start(start, self.rollup_seconds)
            r_exp = r + self.rollup_seconds + self.retention
            if r_exp > now:
                out.append(("r", r, r_exp))
        return out

    def plan(self, t0: float, t1: float, now: float) -> list[tuple[Tier, int]]:
        """The buckets whose sum is the stats of ``[t0, t1)`` (see the module docstring)."""
        fine, roll = self.bucket_seconds, self.rollup_seconds
        starts = range(bucket_start(t0, fine), math.ceil(t1), fine)
        if not starts:
            return []
        if not self.rollups:
            return [("f", s) for s in starts]
        out: list[tuple[Tier, int]] = []
        for parent, group in _groups(starts, roll):
            whole = parent == group[0] and group[-1] == parent + roll - fine
            if whole:
                out.append(("r", parent))
            elif all(self.fine_expiry(s) > now + CLOCK_SLACK for s in group):
                out.extend(("f", s) for s in group)
            elif t0 <= parent < t1:
                out.append(("r", parent))
        return out


def _groups(starts: Iterable[int], roll: int) -> list[tuple[int, list[int]]]:
    groups: list[tuple[int, list[int]]] = []
    for s in starts:
        parent = bucket_start(s, roll)
        if groups and groups[-1][0] == parent:
            groups[-1][1].append(s)
        else:
            groups.append((parent, [s]))
    return groups


class WindowStore(Protocol):
    """Shared window stats: replicas add deltas, the controller and triggers read sums."""

    @property
    def layout(self) -> WindowLayout:
        """Bucket sizes and lifetimes of this store."""

    async def add(self, deltas: Deltas) -> None:
        """Add field increments to their buckets (one round trip for a remote store).

        Raises on store failure, and for a delta the store cannot take
        (``ValueError`` for a non-finite number); nothing of the batch is
        applied then, as far as the store can promise, so the caller may
        retry it or split it.
        """

    async def ping(self) -> None:
        """Return if the store answers; raise if it does not (an outage, not a bad delta)."""

    async def read(
        self, track: str, segment: str, variant: str, t0: float, t1: float
    ) -> WindowStats:
        """Sum of the series' buckets in ``[t0, t1)``."""

    async def read_many(
        self, series: Iterable[Series], t0: float, t1: float
    ) -> dict[Series, WindowStats]:
        """:meth:`read` for several series at once (canary and stable in one round trip)."""

    async def aclose(self) -> None:
        """Release resources the store owns (a client passed in is left open)."""
