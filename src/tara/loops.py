"""How Tara runs async code: a command's event loop, and background loops as ``poll``.

Background loops are written one way: ``async for _ in poll(interval)``, or
``ticks(interval, phase=...)`` for loops that must keep a fixed rate at their
own phase (the telemetry flushes); long work that must not hold a loop up
runs in a thread of its own (:func:`run_in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


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


async def ticks(interval: float, *, phase: float = 0.0) -> AsyncIterator[None]:
    """Yield at ``phase`` intervals from now, then at every interval after (a fixed rate).

    ``0 <= phase < 1``. An iteration that overruns its slot skips the ticks it
    missed: the loop never runs back to back to catch up.
    """
    loop = asyncio.get_running_loop()
    first = loop.time() + phase * interval
    tick = 0
    while True:
        await asyncio.sleep(first + tick * interval - loop.time())
        yield None
        tick = max(tick + 1, math.floor((loop.time() - first) / interval) + 1)


def run_in_loop(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a command's coroutine to the end on uvloop when available (else asyncio)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def run_in_thread(
    make: Callable[[], Coroutine[Any, Any, T]], executor: ThreadPoolExecutor | None = None
) -> T:
    """Run the coroutine ``make()`` returns on an event loop of its own in a worker thread.

    For long work (a dataset build, an evaluation) that must not hold up the
    caller's loop. Cancelling the caller cancels the coroutine in its thread
    too, at its next ``await``, so a cancelled step does not run on unseen.
    """
    cancelled = threading.Event()
    inner: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[T]]] = []

    async def body() -> T:
        task = asyncio.ensure_future(make())
        inner.append((asyncio.get_running_loop(), task))
        if cancelled.is_set():  # cancelled before this thread got going
            task.cancel()
        return await task

    outer = asyncio.get_running_loop().run_in_executor(executor, asyncio.run, body())
    try:
        return await asyncio.shield(outer)
    except asyncio.CancelledError:
        cancelled.set()
        for loop, task in inner:
            with contextlib.suppress(RuntimeError):  # its loop has already closed
                loop.call_soon_threadsafe(task.cancel)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await outer
        raise
