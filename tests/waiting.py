"""Waiting for a condition in tests: poll it with a bound that only stops a broken test.

The bound is a safety net, never a measurement: no test asserts how long
anything took.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import pytest


async def eventually(
    check: Callable[[], object | Awaitable[object]],
    what: str = "the condition",
    within: float = 10.0,
) -> None:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)
