"""The stream timer: the upstream's silence expires, a slow send to the client does not."""

from __future__ import annotations

import asyncio
import time

import pytest

from tara.gateway.stream_timer import StreamTimer


async def test_silence_while_waiting_on_the_upstream_cancels_the_task() -> None:
    loop = asyncio.get_running_loop()
    timer = StreamTimer(loop, idle=0.01, deadline=time.monotonic() + 60)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(5)
    assert timer.expired
    task = asyncio.current_task()
    assert task is not None
    task.uncancel()


async def test_nothing_expires_while_sending_and_stop_ends_it() -> None:
    loop = asyncio.get_running_loop()
    timer = StreamTimer(loop, idle=0.01, deadline=time.monotonic() + 60)
    timer.waiting_since = None  # sending to a slow client, for many idle periods
    await asyncio.sleep(0.1)
    assert not timer.expired
    timer.stop()
    timer.waiting_since = 0.0  # long ago: would expire at once if a check were still due
    await asyncio.sleep(0.05)
    assert not timer.expired
