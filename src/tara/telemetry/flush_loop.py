"""The background loop shared by every batching sink: flush every interval, close cleanly.

A flush in progress is never cancelled half-way (its round trip may already
have been applied, and retrying it would count twice): stopping cancels the
wait between flushes, lets a running flush finish, then flushes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tara.loops import poll

log = logging.getLogger(__name__)


class FlushLoop:
    """Runs ``flush`` every ``interval`` seconds in a task until :meth:`stop`."""

    def __init__(self, flush: Callable[[], Awaitable[object]], interval: float, name: str) -> None:
        self._flush = flush
        self._interval = interval
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[object] | None = None

    def start(self) -> None:
        """Start the loop in the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=self._name)

    async def run(self, *, once: bool = False) -> None:
        """Flush now and then every interval; with ``once``, a single time."""
        async for _ in poll(self._interval, once=once):
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
