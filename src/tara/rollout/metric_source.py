"""Where the controller gets canary and stable numbers: the ``MetricSource`` protocol.

A source answers one question: what did the canary and stable of a
rollout's segment do during ``[t0, t1)``. The built-in
:class:`WindowMetricSource` reads the gateway's window stats (memory or
Redis); a Prometheus source can implement the same two methods. A source
may raise: the controller turns the exception into the ``ERROR`` input of
the decision, which holds (and eventually pauses), never rolls back.

:func:`stage_window_start` says where "since the stage began" starts: the
time of the decision that entered the stage, kept in the rollout's history,
so a pause, a resume or a controller restart does not shorten the window.
"""

from __future__ import annotations

from typing import Protocol

from tara.rollout.decisions import STAGE_ENTRIES
from tara.rollout.model import Rollout
from tara.telemetry.window_store import Series, WindowStore
from tara.telemetry.windows import WindowStats

CANARY = "canary"
STABLE = "stable"


class MetricSource(Protocol):
    """Reads both variants' stats of a rollout's segment for a time range."""

    async def read(self, rollout: Rollout, t0: float, t1: float) -> tuple[WindowStats, WindowStats]:
        """``(canary, stable)`` stats of ``rollout``'s track and segment in ``[t0, t1)``."""
        ...

    async def aclose(self) -> None:
        """Release what the source opened itself."""
        ...


class WindowMetricSource:
    """A :class:`MetricSource` over the gateway's window stats."""

    def __init__(self, store: WindowStore) -> None:
        self._store = store

    async def read(self, rollout: Rollout, t0: float, t1: float) -> tuple[WindowStats, WindowStats]:
        """Both series in one round trip (``read_many``)."""
        label = rollout.segment.label
        canary = Series(rollout.track, label, CANARY)
        stable = Series(rollout.track, label, STABLE)
        stats = await self._store.read_many((canary, stable), t0, t1)
        return stats.get(canary, WindowStats()), stats.get(stable, WindowStats())

    async def aclose(self) -> None:
        """The window store belongs to whoever built it; nothing to release here."""


def stage_window_start(rollout: Rollout) -> float:
    """When the rollout's current stage began (the start of its analysis window).

    The entering decision is the newest ``start``/``advance``/``promote`` in
    the history. If the history no longer holds it (it keeps the latest 200
    decisions), fall back to the running stage's start minus the time it ran
    before — exact unless the stage was paused.
    """
    for decision in reversed(rollout.history):
        if decision.decision in STAGE_ENTRIES:
            return decision.at
    started = rollout.stage_started_at
    if started is None:
        return rollout.updated_at - rollout.stage_elapsed_before
    return started - rollout.stage_elapsed_before
