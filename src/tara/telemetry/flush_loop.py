"""The background loop shared by every batching sink: flush every interval, close cleanly.

Flushes keep to a fixed-rate schedule, each loop at its own phase of the
interval: the sinks of one gateway (window stats, request index, user
retries) each flush a second's worth of records, and started together and
sleeping an interval after each flush they ran in the same loop iteration,
their stalls adding up. Window stats flush at phase 0, the request index at
1/3 and the user-retry detector at 2/3. A flush that overruns its slot
skips the ticks it missed; it never makes the loop run back to back to
catch up.

A flush in progress is never cancelled half-way (its round trip may already
have been applied, and retrying it would count twice): stopping cancels the
wait between flushes, lets a running flush finish, then flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tara.loops import ticks

log = logging.getLogger(__name__)


class FlushLoop:
    """Runs ``flush`` every ``interval`` seconds in a task until :meth:`stop`.

    The first flush comes ``phase`` intervals after :meth:`start` (``0 <= phase < 1``),
    the k-th ``k + phase`` intervals after it.
    """

    def __init__(
        self,
        flush: Callable[[], Awaitable[object]],
        interval: float,
        name: str,
        *,
        phase: float = 0.0,
    ) -> None:
        self._flush = flush
        self._interval = interval
        self._phase = phase
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[object] | None = None

    def start(self) -> None:
        """Start the loop in the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=self._name)

    async def run(self, *, once: bool = False) -> None:
        """Flush at every tick of the schedule; with ``once``, a single time, now."""
        if once:
            await self._flush_shielded()
            return
        async for _ in ticks(self._interval, phase=self._phase):
            await self._flush_shielded()

    async def stop(self) -> None:
        """Stop the loop, wait for a running flush, and flush once more."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight is not None:
            with contextlib.suppress(Exception):  # already logged by the loop
                await self._inflight
        await self._flush_shielded()

    async def _flush_shielded(self) -> None:
        self._inflight = asyncio.ensure_future(self._flush())
        try:
            await asyncio.shield(self._inflight)
        except Exception:  # the flushers count their failures; this loop must survive
            log.exception("%s: flush failed", self._name)
