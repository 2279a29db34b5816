"""The one way background loops are written: ``async for _ in poll(interval)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


async def poll(interval: float, *, once: bool = False) -> AsyncIterator[None]:
    """Yield now, then every ``interval`` seconds; with ``once`` yield a single time.

    The sleep is measured from the end of the caller's iteration, so a slow
    iteration never makes the loop spin to catch up.
    """
    while True:
        yield None
        if once:
            return
        await asyncio.sleep(interval)
