"""How Tara runs async code: a command's event loop, and background loops as ``poll``.

Background loops are written one way: ``async for _ in poll(interval)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any


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


def run_in_loop(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a command's coroutine to the end on uvloop when available (else asyncio)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(coro)
    else:
        uvloop.run(coro)
