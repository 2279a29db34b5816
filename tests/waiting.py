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
    status: Callable[[], object | Awaitable[object]] | None = None,
) -> None:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``within`` s.

    ``status`` (sync or async), when given, says in the failure where things stood.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            where = "" if status is None else f"; {await _value(status)}"
            pytest.fail(f"timed out after {within} s waiting for {what}{where}")
        await asyncio.sleep(0.02)


async def _value(call: Callable[[], object | Awaitable[object]]) -> object:
    result = call()
    return await result if inspect.isawaitable(result) else result
