"""The loop's tick over a real interaction log and real stores: what starts a run, what does not.

The log is a SQLite file filled directly (no gateway needed to decide);
the stores are the memory ones, or the real Redis where two controllers
race. No run here gets past ``pending``: the steps have their own tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tara.retrain.config import RetrainSettings
from tara.retrain.retrainer import Retrainer, RetrainReport
from tara.retrain.run import Run, RunState
from tara.rollout.controller import Controller
from tara.rollout.lease_redis import RedisLease
from tara.rollout.metric_source import WindowMetricSource
from tara.rollout.rollout_store_redis import leader_token_key
from tara.rollout.routing import Segment
from tara.rollout.service import RolloutService
from tara.settings import Settings
from tara.state import SharedState, open_state
from tara.telemetry.interactions import Interaction
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.telemetry.metrics import MetricsRecorder
from tara.triggers.config import TriggerSettings
from tara.triggers.model import Scope
from tcp_relay import REDIS_URL
from waiting import eventually

HOUR = 3600.0
HI_MATH = Scope(language="hi", subject="math")


class Sink:
    """An event sink that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []

    def notify(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)

    async def aclose(self, timeout: float) -> None:  # noqa: ASYNC109 - the protocol's
        return None

    def fired(self) -> list[Mapping[str, Any]]:
        return [e for e in self.events if e["event"] == "trigger_fired"]


def settings(tmp_path: Path, **retrain: Any) -> Settings:
    return Settings(
        state_backend="memory",
        telemetry={"sqlite_path": tmp_path / "interactions.db"},
        triggers=TriggerSettings(period=timedelta(hours=1), min_ratings=20),
        retrain=RetrainSettings(
            **({"interval": timedelta(seconds=30), "min_training_examples": 50} | retrain)
        ),
    )


async def fill(s: Settings, ratings: Mapping[int, int], language: str = "hi") -> None:
    """``ratings[r]`` rated-``r`` interactions of ``language``×math in the last hour."""
    now = time.time()
    n = 0
    records = []
    for rating, count in ratings.items():
        for _ in range(count):
            n += 1
            records.append(
                Interaction(
                    request_id=f"req-{language}-{n:05d}",
                    created_at=now - 600 + n,
                    track="tara-tutor",
                    segment="all",
                    variant="stable",
                    model="tara-stable",
                    student_hash="ab" * 32,
                    subject="math",
                    language=language,
                    grade="8",
                    status=200,
                    latency_s=0.5,
                    rating=rating,
                    rated_at=now - 500 + n,
                )
            )
    log = SqliteInteractionLog(s.telemetry.sqlite_path)
    try:
        await log.migrate()
        await log.write_batch(records)
    finally:
        await log.aclose()


def retrainer(
    s: Settings, state: SharedState, sink: Sink, registry: CollectorRegistry | None = None
) -> Retrainer:
    service = RolloutService.over(state, s)
    metrics = MetricsRecorder.on(registry or CollectorRegistry(), s.subjects, s.languages)
    return Retrainer(s, state.runs, state.ledger, service, sink, metrics)


async def evaluate_once(loop: Retrainer, token: int) -> RetrainReport:
    """Tick until one trigger evaluation has been acted on; that tick's report."""
    reports: list[RetrainReport] = []

    async def evaluated() -> bool:
        reports.append(await loop.tick(token))
        return reports[-1].evaluated

    await eventually(evaluated, "a trigger evaluation")
    return reports[-1]


async def test_a_firing_with_too_little_data_starts_no_run_and_says_why(tmp_path: Path) -> None:
    s = settings(tmp_path)
    await fill(s, {2: 30, 5: 10})  # mean 2.75 over 40 ratings: low_rating fires
    sink, registry = Sink(), CollectorRegistry()
    async with contextlib.aclosing(open_state(s)) as state:
        loop = retrainer(s, state, sink, registry)
        report = await evaluate_once(loop, 1)
        assert report.started == []
        assert await state.runs.list() == []
        [decision] = (await state.ledger.load()).ledger.decisions
        assert decision["segment"] == "math:hi"
        assert decision["start"] is False
        assert decision["reason"].startswith("too little data: 10 of 50 interactions rated ≥ 4")
        await loop.aclose()
    # Rated low throughout: its grade and topic cells are knowledge gaps, in the same decision.
    events = {e["trigger"]: e for e in sink.fired()}
    assert sorted(events) == ["knowledge_gap", "low_rating"]
    for event in events.values():
        assert (event["outcome"], event["run_id"]) == ("held", None)
        assert event["reason"] == decision["reason"]
    assert registry.get_sample_value("tara_trigger_fired_total", {"trigger": "low_rating"}) == 1
    assert registry.get_sample_value("tara_finetune_runs_total", {"status": "pending"}) == 0


async def test_a_small_sample_does_not_even_fire(tmp_path: Path) -> None:
    s = settings(tmp_path)
    await fill(s, {1: 10, 5: 60})  # 70 ratings, but mean 4.4 ...
    await fill(s, {1: 15}, language="ta")  # ... and ta×math is all 1s, over only 15 ratings
    sink = Sink()
    async with contextlib.aclosing(open_state(s)) as state:
        loop = retrainer(s, state, sink)
        await evaluate_once(loop, 1)
        assert await state.runs.list() == []
        assert (await state.ledger.load()).ledger.decisions == []
        await loop.aclose()
    assert sink.fired() == []


async def test_enough_data_starts_one_run_and_the_next_look_cools_down(tmp_path: Path) -> None:
    s = settings(tmp_path, interval=timedelta(seconds=0))
    await fill(s, {2: 50, 4: 30, 5: 30})  # mean 3.36, 60 rated ≥ 4
    sink = Sink()
    async with contextlib.aclosing(open_state(s)) as state:
        loop = retrainer(s, state, sink)
        loop.steps.perform = _never  # type: ignore[method-assign]  # stays pending
        first = await evaluate_once(loop, 1)
        [run] = await state.runs.list()
        assert first.started == [run.id]
        assert run.state is RunState.PENDING
        assert run.segment == Segment("math", "hi")
        assert run.data_until == pytest.approx(time.time(), abs=30)
        assert run.triggers[0]["trigger"] == "low_rating"
        ledger = (await state.ledger.load()).ledger
        assert ledger.triggers.last_run(HI_MATH, "low_rating") == run.data_until

        # The run is open: the next look holds the segment.
        await evaluate_once(loop, 1)
        assert len(await state.runs.list()) == 1
        [held] = (await state.ledger.load()).ledger.decisions
        assert held["reason"] == f"run {run.id} is open on math:hi (pending)"

        # It ended (rolled back): the segment cools down for triggers.cooldown.
        stored = await state.runs.load(run.id)
        assert stored is not None
        ended = run.entered(RunState.ROLLED_BACK, time.time(), "rollout ro-1 rolled_back")
        assert await state.runs.save(ended, stored.revision)
        await evaluate_once(loop, 1)
        assert len(await state.runs.list()) == 1
        [cooling] = (await state.ledger.load()).ledger.decisions
        assert cooling["reason"] in (
            "cooling down for 14d after its last run",
            "cooling down for 13d 23h after its last run",
        )
        assert cooling["cooldown_until"] == pytest.approx(ended.ended_at + 14 * 86_400)
        await loop.aclose()
    for trigger in ("low_rating", "knowledge_gap"):  # one run for both, then held twice
        outcomes = [e["outcome"] for e in sink.fired() if e["trigger"] == trigger]
        assert outcomes == ["started", "held", "held"], trigger


async def _never(_work: object) -> object:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.redis
async def test_a_fenced_leader_cannot_start_the_run_its_successor_started(
    tmp_path: Path, redis_client: aioredis.Redis, namespace: str
) -> None:
    conf = settings(tmp_path).model_copy(
        update={"state_backend": "redis", "redis_url": REDIS_URL, "redis_namespace": namespace}
    )
    await fill(conf, {2: 50, 4: 30, 5: 30})
    async with contextlib.aclosing(open_state(conf, redis=redis_client)) as state:
        old = retrainer(conf, state, Sink())
        new = retrainer(conf, state, Sink())
        for loop in (old, new):
            loop.steps.perform = _never  # type: ignore[method-assign]
        token_key = leader_token_key(namespace)
        first = int(await redis_client.incr(token_key))
        # The old leader evaluates; before it acts, its lease passes to a new leader.
        await old.tick(first)
        assert old._evaluation is not None
        await asyncio.wait({old._evaluation})
        second = int(await redis_client.incr(token_key))
        started = await evaluate_once(new, second)
        assert len(started.started) == 1
        late = await old.tick(first)
        assert late.fenced
        assert late.started == []
        runs = await state.runs.list()
        assert [r.id for r in runs] == started.started
        await old.aclose()
        await new.aclose()


@pytest.mark.redis
async def test_two_controllers_on_one_redis_start_one_run(
    tmp_path: Path, redis_client: aioredis.Redis, namespace: str
) -> None:
    conf = settings(tmp_path, interval=timedelta(seconds=0)).model_copy(
        update={"state_backend": "redis", "redis_url": REDIS_URL, "redis_namespace": namespace}
    )
    await fill(conf, {2: 50, 4: 30, 5: 30})
    async with contextlib.aclosing(open_state(conf, redis=redis_client)) as state:
        controllers = []
        for _ in range(2):
            loop = retrainer(conf, state, Sink())
            loop.steps.perform = _never  # type: ignore[method-assign]
            service = RolloutService.over(state, conf)
            controllers.append(
                Controller(
                    service,
                    WindowMetricSource(state.windows),
                    RedisLease(redis_client, namespace, ttl=0.3),
                    conf.rollout,
                    None,
                    Sink(),
                    companions=[loop],
                )
            )

        async def run(ctl: Controller) -> None:
            for _ in range(60):
                await ctl.tick()
                await asyncio.sleep(0.02)

        await asyncio.gather(*(run(c) for c in controllers))
        runs: list[Run] = await state.runs.list()
        assert len(runs) == 1, [r.id for r in runs]
        for ctl in controllers:
            await ctl.shutdown(None, 1.0)


async def test_a_controller_that_stops_leading_stops_its_steps_and_reports_nothing(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, interval=timedelta(seconds=0))
    await fill(s, {2: 50, 4: 30, 5: 30})
    registry = CollectorRegistry()
    async with contextlib.aclosing(open_state(s)) as state:
        loop = retrainer(s, state, Sink(), registry)
        loop.steps.perform = _never  # type: ignore[method-assign]
        await evaluate_once(loop, 1)
        await loop.tick(1)  # the run's first step is now in flight
        [task] = loop._tasks.values()
        gauge = {"state": "pending"}
        assert registry.get_sample_value("tara_finetune_runs_open", gauge) == 1
        assert await loop.tick(None) == RetrainReport()
        await asyncio.sleep(0)
        assert task.cancelled()
        assert registry.get_sample_value("tara_finetune_runs_open", gauge) == 0
        assert registry.get_sample_value("tara_finetune_run_state_age_seconds", gauge) == 0
        [run] = await state.runs.list()
        assert run.state is RunState.PENDING  # the next leader prepares it
        await loop.aclose()
