"""The controller loop over real stores: stages, rollback, errors, restarts, two leaders."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.controller import Controller, analysis_due
from tara.rollout.lease import MemoryLease, MemoryLeaseBoard
from tara.rollout.lease_redis import RedisLease
from tara.rollout.metric_source import WindowMetricSource, stage_window_start
from tara.rollout.model import Phase, Rollout
from tara.rollout.rollout_store_memory import MemoryRolloutStore
from tara.rollout.rollout_store_redis import RedisRolloutStore
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.rollout.service import RolloutService
from tara.telemetry.metrics import MetricsRecorder
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_store import WindowKey, WindowStore
from tara.telemetry.window_store_memory import MemoryWindowStore
from tara.telemetry.window_store_redis import RedisWindowStore
from tara.telemetry.windows import latency_bucket
from tcp_relay import RedisProxy
from waiting import eventually

TRACK = "tara-tutor"
STABLES = {TRACK: "tara-stable"}
STATS = TelemetryStatsSettings(bucket_seconds=1, rollup_seconds=60)
STAGE_SECONDS = 30.0


def settings(**overrides: Any) -> RolloutSettings:
    """Three 30-second stages that need a little evidence; analysis every 2 s."""
    stages = [
        StageSettings(
            percent=p,
            duration=timedelta(seconds=STAGE_SECONDS),
            min_requests=100,
            min_ratings=50,
            intensive=p == 10,
        )
        for p in (10, 25, 50)
    ]
    base: dict[str, Any] = {
        "stages": stages,
        "interval": timedelta(seconds=2),
        "intensive_interval": timedelta(seconds=1),
        "tick_interval": timedelta(seconds=1),
    }
    return RolloutSettings(**{**base, **overrides})


class Clock:
    """Epoch seconds that tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Events:
    """A :class:`~tara.rollout.webhooks.EventSink` that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []
        self.closed = False

    def notify(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)

    async def aclose(self, timeout: float = 0.0) -> None:  # noqa: ASYNC109 - the protocol's
        self.closed = True

    @property
    def names(self) -> list[str]:
        return [str(e["event"]) for e in self.events]


def fields(n: int, errors: int = 0, ratings: tuple[int, ...] = (0, 0, 2, 6, 2)) -> dict[str, float]:
    """``n`` requests (``errors`` failed, the rest 0.5 s) and ``n/2`` ratings shaped ``ratings``."""
    out: dict[str, float] = {"req": n, f"lat:{latency_bucket(0.5)}": n - errors}
    if errors:
        out["err:upstream"] = errors
    scale = n // 2 // sum(ratings)
    for value, count in enumerate(ratings, start=1):
        if count:
            out[f"rat:{value}"] = count * scale
    return out


async def feed(
    store: WindowStore, rollout: Rollout, t: float, canary: dict[str, float], n_stable: int = 100
) -> None:
    """One second of traffic for the rollout's segment, filed at time ``t``."""
    label = rollout.segment.label
    await store.add(
        {
            WindowKey(TRACK, label, "canary", int(t)): canary,
            WindowKey(TRACK, label, "stable", int(t)): fields(n_stable),
        }
    )


class World:
    """Memory stores, a service and controllers sharing one lease board and clock."""

    def __init__(self, cfg: RolloutSettings | None = None) -> None:
        self.cfg = cfg or settings()
        self.clock = Clock()
        self.board = MemoryLeaseBoard()
        self.rollouts = MemoryRolloutStore(leader_token=lambda: self.board.token)
        self.routing = MemoryRoutingStore()
        self.service = RolloutService(
            self.rollouts, self.routing, self.cfg, STABLES, clock=self.clock
        )
        self.windows = MemoryWindowStore(STATS, clock=self.clock)
        self.registry = CollectorRegistry()
        self.metrics = MetricsRecorder.on(self.registry, ["math"], ["hi"])
        self.events = Events()

    def controller(self, source: Any = None) -> Controller:
        lease = MemoryLease(10.0, board=self.board, clock=self.clock)
        return Controller(
            self.service,
            source or WindowMetricSource(self.windows),
            lease,
            self.cfg,
            self.metrics,
            self.events,
            clock=self.clock,
            tracks=[TRACK],
        )

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    async def run(
        self, ctl: Controller, rollout_id: str, canary: dict[str, float], seconds: int
    ) -> Rollout:
        """Feed traffic and tick once a second until the rollout ends or time is up."""
        for _ in range(seconds):
            rollout = await self.service.get(rollout_id)
            if rollout.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK):
                return rollout
            await feed(self.windows, rollout, self.clock.now, canary)
            self.clock.now += 1
            await ctl.tick()
        return await self.service.get(rollout_id)


def decisions(rollout: Rollout) -> list[str]:
    return [d.decision for d in rollout.history]


async def test_a_good_canary_climbs_every_stage_and_becomes_stable() -> None:
    w = World()
    ctl = w.controller()
    assert (await ctl.tick()).leader  # leading before the rollout exists: its start is news
    started = await w.service.start(TRACK, "ft-good")
    end = await w.run(ctl, started.id, fields(40), seconds=200)

    assert end.phase is Phase.SUCCEEDED
    assert decisions(end) == ["start", "advance", "advance", "succeed"]
    entries = [d.at for d in end.history]
    for previous, entered in itertools.pairwise(entries):
        assert entered - previous >= STAGE_SECONDS  # no stage passed before its time
        assert entered - previous <= STAGE_SECONDS + 3  # ... nor was it held for nothing
    table = await w.routing.load_table()
    assert table is not None
    assert table.tracks[TRACK].stable_model == "ft-good"
    assert table.tracks[TRACK].canaries == ()
    assert w.events.names == ["started", "promoted", "promoted", "succeeded"]
    assert w.events.events[-1]["canary_weight"] == 1.0
    assert "canary passed every stage" in w.events.events[-1]["reason"]
    assert w.sample("tara_rollout_canary_weight", track=TRACK, segment="all") == 1.0
    assert w.sample("tara_rollout_stage", track=TRACK, segment="all") == 3
    count = "tara_rollout_decisions_total"
    assert w.sample(count, track=TRACK, decision="promote") == 2
    assert w.sample(count, track=TRACK, decision="succeed") == 1
    assert w.sample(count, track=TRACK, decision="start") == 1
    assert (w.sample(count, track=TRACK, decision="hold") or 0) > 20
    assert w.sample(count, track=TRACK, decision="rollback") == 0  # created at zero


async def test_a_failing_canary_is_rolled_back_and_traffic_returns_to_stable() -> None:
    w = World()
    ctl = w.controller()
    await ctl.tick()
    started = await w.service.start(TRACK, "ft-bad", subject="math")
    table = await w.routing.load_table()
    assert table is not None
    assert table.tracks[TRACK].canaries[0].weight_bp == 1000
    end = await w.run(ctl, started.id, fields(40, errors=8), seconds=60)

    assert end.phase is Phase.ROLLED_BACK
    assert decisions(end) == ["start", "rollback"]
    assert end.history[-1].at - end.history[0].at < 10  # at the first looks, not the stage's end
    assert "error rate" in end.history[-1].reason
    table = await w.routing.load_table()
    assert table is not None
    assert table.tracks[TRACK].canaries == ()
    assert table.tracks[TRACK].stable_model == "tara-stable"
    assert w.events.names == ["started", "rolled_back"]
    assert w.events.events[-1]["segment"] == "math:*"
    assert w.sample("tara_rollout_canary_weight", track=TRACK, segment="math:*") == 0.0
    assert w.sample("tara_rollout_decisions_total", track=TRACK, decision="rollback") == 1
    report = await ctl.tick()  # a finished rollout is left alone
    assert report.active == 0
    assert report.decisions == []


async def test_a_controller_killed_mid_stage_resumes_with_the_time_left() -> None:
    w = World()
    first = w.controller()
    await first.tick()
    started = await w.service.start(TRACK, "ft-good")
    t0 = started.history[0].at
    mid = await w.run(first, started.id, fields(40), seconds=12)
    assert mid.stage_index == 0
    del first  # killed: its lease is never released

    second = w.controller()
    assert not (await second.tick()).leader  # the dead leader's lease still runs
    end = await w.run(second, started.id, fields(40), seconds=60)
    assert end.stage_index >= 1
    advanced = next(d for d in end.history if d.decision == "advance")
    # The stage ends 30 s after it began, not 30 s after the restart (t0 + 12 + 10 s lease).
    assert t0 + STAGE_SECONDS <= advanced.at <= t0 + STAGE_SECONDS + 2
    assert second.lease.token == 2


@pytest.mark.redis
async def test_unreadable_stats_pause_and_alert_but_never_roll_back(
    redis_proxy: RedisProxy, redis_client: aioredis.Redis, namespace: str
) -> None:
    w = World()
    client = aioredis.Redis.from_url(redis_proxy.url, retry=Retry(NoBackoff(), 0))
    windows = RedisWindowStore(client, namespace=namespace, settings=STATS, clock=w.clock)
    ctl = w.controller(WindowMetricSource(windows))
    try:
        await ctl.tick()
        started = await w.service.start(TRACK, "ft-1")
        await feed(windows, started, w.clock.now + 1, fields(40, errors=8))
        await redis_proxy.stop()  # the stats are bad, but nobody can read them
        for _ in range(10):
            w.clock.now += 1
            await ctl.tick()
    finally:
        await client.aclose()
    end = await w.service.get(started.id)
    assert end.phase is Phase.PAUSED
    # Paused, it still looks (a failure would still roll back) and counts each unreadable look.
    assert decisions(end)[:5] == ["start", "error", "error", "error", "pause"]
    assert set(decisions(end)[5:]) == {"error"}
    assert "stats unreadable 3 times" in end.history[4].reason
    assert w.events.names == ["started", "paused"]
    errors = decisions(end).count("error")
    assert w.sample("tara_rollout_decisions_total", track=TRACK, decision="error") == errors
    assert w.sample("tara_rollout_decisions_total", track=TRACK, decision="rollback") == 0
    assert w.sample("tara_rollout_canary_weight", track=TRACK, segment="all") == 0.1


async def test_operator_decisions_are_reported_once() -> None:
    w = World()
    ctl = w.controller()
    await ctl.tick()
    started = await w.service.start(TRACK, "ft-1")
    await ctl.tick()
    await w.service.pause(started.id, reason="exam week")
    await ctl.tick()
    await ctl.tick()
    assert w.events.names == ["started", "paused"]
    assert w.events.events[-1]["actor"] == "operator"
    assert w.events.events[-1]["reason"] == "exam week"
    assert w.sample("tara_rollout_decisions_total", track=TRACK, decision="pause") == 1


async def test_a_restarted_controller_does_not_repeat_old_events() -> None:
    w = World()
    started = await w.service.start(TRACK, "ft-1")  # before any controller leads
    w.clock.now += 5
    first = w.controller()
    report = await first.tick()
    assert report.leader
    assert report.active == 1
    # The operator's start waited in the rollout's outbox for a leader; it is announced once.
    assert w.events.names == ["started"]
    assert (await w.service.get(started.id)).outbox == ()
    await first.lease.release()  # restarted
    second = w.controller()
    for _ in range(3):
        w.clock.now += 1
        await second.tick()
    assert w.events.names == ["started"]
    assert w.sample("tara_rollout_decisions_total", track=TRACK, decision="start") == 1
    assert stage_window_start(await w.service.get(started.id)) == started.history[0].at


async def test_a_lost_lease_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    w = World()
    first, second = w.controller(), w.controller()
    assert (await first.tick()).leader
    w.clock.now += 11  # the 10 s lease ran out: the second controller takes over
    assert (await second.tick()).leader
    assert not (await first.tick()).leader
    assert not (await first.tick()).leader  # one lost tenure is counted once
    lost = "tara_controller_leadership_lost_total"
    assert w.sample(lost, reason="expired") == 1
    assert w.sample(lost, reason="fenced") == 0
    assert "lost leadership of tenure 1 (expired)" in caplog.text


async def test_analysis_is_due_at_the_stage_interval() -> None:
    w = World()
    now = w.clock.now
    rollout = await w.service.start(TRACK, "ft-1")
    assert not analysis_due(rollout, now + 0.5)
    assert analysis_due(rollout, now + 1.0)  # intensive stage: every second


async def test_shutdown_lets_a_running_tick_finish_then_steps_down() -> None:
    w = World()
    gate, reading = asyncio.Event(), asyncio.Event()
    windows = WindowMetricSource(w.windows)

    class Slow:
        async def read(self, rollout: Rollout, t0: float, t1: float) -> Any:
            reading.set()
            await gate.wait()
            return await windows.read(rollout, t0, t1)

        async def aclose(self) -> None:
            """Nothing to close."""

    ctl = w.controller(Slow())
    await ctl.tick()
    started = await w.service.start(TRACK, "ft-1")
    w.clock.now += 1
    runner = asyncio.create_task(ctl.run())
    await reading.wait()  # the tick now waits for the stats
    stopping = asyncio.create_task(ctl.shutdown(runner, timeout=5.0))
    await eventually(runner.done, "shutdown to stop the loop")
    assert not stopping.done()  # ... but it waits for the running tick
    gate.set()
    await stopping
    assert runner.cancelled()
    assert (await w.service.get(started.id)).last_decision is not None
    assert ctl.lease.token is None
    assert w.board.owner is None
    assert w.events.closed


async def test_run_once_and_burst() -> None:
    w = World()
    ctl = w.controller()
    await ctl.run(once=True)
    assert ctl.last_report is not None
    assert ctl.last_report.leader
    await ctl.run(burst=True)  # nothing live: returns after one tick
    started = await w.service.start(TRACK, "ft-bad")
    await feed(w.windows, started, w.clock.now + 1, fields(200, errors=40))
    w.clock.now += 2
    await ctl.run(burst=True)
    assert (await w.service.get(started.id)).phase is Phase.ROLLED_BACK


# -- two controllers, one Redis -------------------------------------------


class RedisWorld:
    """Redis stores of one namespace, a fake decision clock, real lease TTLs."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.cfg = settings()
        self.clock = Clock(time.time())  # Redis expires window buckets by its own clock
        self.service = RolloutService(
            RedisRolloutStore(client, namespace),
            RedisRoutingStore(client, namespace),
            self.cfg,
            STABLES,
            clock=self.clock,
        )
        self.windows = RedisWindowStore(
            client, namespace=namespace, settings=STATS, clock=self.clock
        )
        self.events = Events()
        self.registry = CollectorRegistry()

    def controller(self, ttl: float, source: Any = None, lease_clock: Any = None) -> Controller:
        lease = RedisLease(self.client, self.namespace, ttl, clock=lease_clock or time.monotonic)
        return Controller(
            self.service,
            source or WindowMetricSource(self.windows),
            lease,
            self.cfg,
            MetricsRecorder.on(self.registry),
            self.events,
            clock=self.clock,
        )


@pytest.mark.redis
async def test_two_controllers_on_one_redis_never_double_promote(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    w = RedisWorld(redis_client, namespace)
    a, b = w.controller(ttl=0.3), w.controller(ttl=0.3)
    await asyncio.gather(a.tick(), b.tick())
    started = await w.service.start(TRACK, "ft-good")
    leaders: set[int] = set()
    for i in range(160):
        rollout = await w.service.get(started.id)
        if rollout.phase is Phase.SUCCEEDED:
            break
        await feed(w.windows, rollout, w.clock.now, fields(40))
        w.clock.now += 1
        reports = await asyncio.gather(a.tick(), b.tick())
        assert sum(r.leader for r in reports) <= 1
        leaders |= {r.token for r in reports if r.leader and r.token}
        if i % 15 == 14:  # hand over: the leader steps down, the other one takes over
            await (a if reports[0].leader else b).lease.release()
    end = await w.service.get(started.id)
    assert end.phase is Phase.SUCCEEDED
    assert decisions(end) == ["start", "advance", "advance", "succeed"]
    assert [d.at for d in end.history] == sorted({d.at for d in end.history})
    assert len(leaders) >= 5  # leadership really changed hands many times
    assert w.events.names.count("promoted") == 2


@pytest.mark.redis
async def test_a_stale_leader_is_fenced_off(redis_client: aioredis.Redis, namespace: str) -> None:
    w = RedisWorld(redis_client, namespace)
    paused = asyncio.Event()
    resumed = asyncio.Event()
    windows = WindowMetricSource(w.windows)

    class Stalling:
        """Stats that arrive only after a long pause (a GC pause, a frozen VM)."""

        async def read(self, rollout: Rollout, t0: float, t1: float) -> Any:
            paused.set()
            await resumed.wait()
            return await windows.read(rollout, t0, t1)

        async def aclose(self) -> None:
            """Nothing to close."""

    frozen = Clock(0.0)  # its own clock froze too, so it still believes it leads
    stale = w.controller(ttl=0.2, source=Stalling(), lease_clock=frozen)
    await stale.tick()
    started = await w.service.start(TRACK, "ft-bad")
    await feed(w.windows, started, w.clock.now + 1, fields(200, errors=40))
    w.clock.now += 2
    tick = asyncio.create_task(stale.tick())
    await paused.wait()
    owner = stale.lease.owner_key  # type: ignore[attr-defined]

    async def expired() -> bool:
        return not await redis_client.exists(owner)

    await eventually(expired, "its lease to expire in Redis")
    successor = RedisLease(redis_client, namespace, 5.0)
    assert await successor.acquire()  # elected, has not written anything yet
    resumed.set()
    report = await tick
    assert report.fenced
    assert report.decisions == []
    stored = await w.service.get(started.id)
    assert stored.phase is Phase.PROGRESSING  # the stale rollback was refused
    assert decisions(stored) == ["start"]
    assert not (await stale.tick()).leader
    assert successor.token == 2
    assert (
        w.registry.get_sample_value("tara_controller_leadership_lost_total", {"reason": "fenced"})
        == 1
    )
