"""The servers' garbage collection policy (tara.garbage): off by default, on a schedule."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import pytest

from collector import collector_off
from tara.garbage import CalmCollector
from waiting import eventually


class _Cycle:
    """An object that refers to itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def automatic_off() -> Iterator[None]:
    with collector_off():
        yield


def test_due_after_the_growth_limit_or_the_interval() -> None:
    collector = CalmCollector(interval=60, growth_limit=1000)
    assert not collector.due(999, 59.9)
    assert collector.due(1000, 0.0)
    assert collector.due(0, 60.0)


@pytest.mark.usefixtures("automatic_off")
async def test_growth_past_the_limit_is_collected_long_before_the_interval() -> None:
    collector = CalmCollector(interval=3600, growth_limit=5_000, check_every=0.01).start()
    try:
        cycles = [_Cycle() for _ in range(10_000)]
        probe = weakref.ref(cycles[0])
        del cycles
        await eventually(lambda: probe() is None, "the cycles to be collected", within=10)
    finally:
        collector.stop()
    assert collector.collections >= 1
    assert collector.collected >= 10_000


@pytest.mark.usefixtures("automatic_off")
async def test_the_interval_collects_what_never_reaches_the_limit() -> None:
    collector = CalmCollector(interval=0.05, growth_limit=10**9).start()
    try:
        probe = weakref.ref(_Cycle())
        await eventually(lambda: probe() is None, "a lone cycle to be collected", within=10)
    finally:
        collector.stop()
    assert collector.collected >= 1


def test_a_stopped_collector_stops() -> None:
    collector = CalmCollector(interval=0.01).start()
    collector.stop()
    assert not collector._thread.is_alive()
    collector.stop()  # again: nothing to wait for
