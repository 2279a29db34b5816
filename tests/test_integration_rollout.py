"""End to end: sandbox + gateway + controller + simulated students, with second-long stages.

Everything real: ``tara sandbox`` and the gateway on loopback ports, state in
the real Redis (one private namespace shared by gateway, service and
controller), ratings posted to ``POST /v1/feedback``, webhooks to a local
receiver. Students rate what they get from the sandbox's own quality score
of the model that answered, so the "bad" candidate is rated lower.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from tara.gateway.server import gateway_from_settings
from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.controller_server import ControllerParts, controller_parts
from tara.rollout.model import Phase, Rollout
from tara.sandbox.config import Latency, default_config
from tara.sandbox.server import running_sandbox, serving
from tara.serving import running_server
from tara.settings import DEV_CLIENT_KEY, Settings
from tara.telemetry.stats_config import TelemetryStatsSettings
from tcp_relay import REDIS_URL
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.redis]

TRACK = "tara-tutor"
STUDENTS = 400
WORKERS = 12


def rollout_settings(webhook: str) -> RolloutSettings:
    """Three two-second stages (40/60/80%) that need a little evidence; five looks a second."""
    stages = [
        StageSettings(percent=p, duration=timedelta(seconds=2), min_requests=40, min_ratings=30)
        for p in (40, 60, 80)
    ]
    return RolloutSettings(
        stages=stages,
        interval=timedelta(seconds=0.2),
        intensive_interval=timedelta(seconds=0.2),
        tick_interval=timedelta(seconds=0.1),
        leader_ttl=timedelta(seconds=1),
        min_test_ratings=15,
        min_stable_latency_samples=40,
        stall_factor=20,  # a loaded CI machine may need a few extra seconds of evidence
        webhooks=[webhook],
        webhook_backoff=0.05,
        shutdown_timeout=2.0,
    )


@dataclass
class Traffic:
    """Students asking questions through the gateway and rating the answers."""

    client: httpx.AsyncClient
    qualities: dict[str, float]
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    served: list[tuple[float, str, str]] = field(default_factory=list)
    """``(when the request was sent, variant, model)`` of every answered request."""
    failures: int = 0

    async def ask(self, student: str) -> httpx.Response:
        return await self.client.post(
            "/v1/chat/completions",
            headers={"X-Tara-User": student, "X-Tara-Subject": "math", "X-Tara-Language": "en"},
            json={"model": TRACK, "messages": [{"role": "user", "content": "What is 7 x 8?"}]},
        )

    def since(self, t: float) -> set[tuple[str, str]]:
        """``(variant, model)`` of the requests sent after ``t``."""
        return {(variant, model) for sent, variant, model in self.served if sent > t}

    def count_since(self, t: float) -> int:
        """How many answered requests were sent after ``t``."""
        return sum(sent > t for sent, _, _ in self.served)

    def last(self, n: int) -> set[tuple[str, str]]:
        """``(variant, model)`` of the last ``n`` answered requests (fewer: an empty set)."""
        return {(v, m) for _, v, m in self.served[-n:]} if len(self.served) >= n else set()

    async def settle_on(self, variant: str, model: str, n: int = 40) -> None:
        """Wait until ``n`` answers in a row came from ``model``, then check ``n`` more do."""
        await eventually(lambda: self.last(n) == {(variant, model)}, f"{n} answers by {model}")
        checkpoint = time.monotonic()
        await eventually(lambda: self.count_since(checkpoint) >= n, f"{n} more answers")
        assert self.since(checkpoint) == {(variant, model)}

    async def student(self, student: str) -> None:
        sent = time.monotonic()
        response = await self.ask(student)
        if response.status_code != 200:
            self.failures += 1
            return
        variant, model = response.headers["X-Tara-Variant"], response.headers["X-Tara-Model"]
        self.served.append((sent, variant, model))
        # A student's rating follows the answering model's quality, with some noise.
        rating = round(1 + 4 * self.qualities[model] + self.rng.choice((-1, 0, 0, 1)))
        rating = min(5, max(1, rating))
        feedback = {"request_id": response.headers["X-Tara-Request-Id"], "rating": rating}
        answer = await self.client.post("/v1/feedback", json=feedback)
        assert answer.status_code in (200, 202), answer.text

    async def run(self, stop: asyncio.Event) -> None:
        students = itertools.cycle([f"student-{i}" for i in range(STUDENTS)])

        async def worker() -> None:
            while not stop.is_set():
                await self.student(next(students))

        await asyncio.gather(*(worker() for _ in range(WORKERS)))


@dataclass
class Hooks:
    events: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(orjson.loads(await request.read()))
        return web.Response(status=204)

    def names(self, rollout_id: str) -> list[str]:
        return [e["event"] for e in self.events if e["rollout_id"] == rollout_id]


@dataclass
class Stack:
    settings: Settings
    traffic: Traffic
    hooks: Hooks


@contextlib.asynccontextmanager
async def stack(namespace: str, tmp_path: Path) -> AsyncIterator[Stack]:
    fixed = Latency(ttft_median_ms=10, ttft_sigma=0, token_delay_ms=0)
    sandbox = default_config()
    models = {name: m.model_copy(update={"latency": fixed}) for name, m in sandbox.models.items()}
    sandbox = sandbox.model_copy(update={"models": models})
    hooks = Hooks()
    receiver = web.Application()
    receiver.router.add_post("/hooks", hooks.handle)
    async with (
        running_sandbox(sandbox, seed=3) as upstream,
        serving(receiver) as hook_port,
    ):
        settings = Settings(
            state_backend="redis",
            redis_url=REDIS_URL,
            redis_namespace=namespace,
            routing_refresh_seconds=0.05,
            upstream={"base_url": upstream},
            stats=TelemetryStatsSettings(bucket_seconds=1, rollup_seconds=60, flush_interval=0.1),
            telemetry={"sqlite_path": tmp_path / "interactions.db"},
            rollout=rollout_settings(f"http://127.0.0.1:{hook_port}/hooks"),
        )
        gateway = gateway_from_settings(settings, registry=CollectorRegistry())
        async with running_server(gateway) as base:
            headers = {"Authorization": f"Bearer {DEV_CLIENT_KEY}"}
            limits = httpx.Limits(max_connections=WORKERS * 2)
            async with httpx.AsyncClient(
                base_url=base, headers=headers, timeout=10, limits=limits
            ) as client:
                qualities = {name: m.quality for name, m in models.items()}
                yield Stack(settings, Traffic(client, qualities), hooks)


@contextlib.asynccontextmanager
async def controller(
    settings: Settings,
) -> AsyncIterator[tuple[ControllerParts, asyncio.Task[None]]]:
    """A controller running its loop; on exit it is shut down gracefully."""
    async with controller_parts(settings, CollectorRegistry()) as parts:
        runner = asyncio.create_task(parts.controller.run())
        try:
            yield parts, runner
        finally:
            await parts.controller.shutdown(runner, 2.0)


async def wait_for(parts: ControllerParts, rollout_id: str, done: Any, limit: float) -> Rollout:
    deadline = time.monotonic() + limit
    while True:
        rollout = await parts.service.get(rollout_id)
        if done(rollout) or time.monotonic() > deadline:
            return rollout
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def students(traffic: Traffic) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(traffic.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def test_bad_canary_is_rolled_back_and_good_one_becomes_stable_across_a_restart(
    redis_client: aioredis.Redis, namespace: str, tmp_path: Path
) -> None:
    async with stack(namespace, tmp_path) as s, students(s.traffic):
        # -- a bad candidate: rolled back, everyone on stable again -------------------
        async with controller(s.settings) as (parts, _runner):
            bad = await parts.service.start(TRACK, "tara-candidate-bad")
            bad = await wait_for(parts, bad.id, lambda r: r.phase in TERMINAL_PHASES, 60)
            assert bad.phase is Phase.ROLLED_BACK, bad.history[-1]
            assert [d.decision for d in bad.history] == ["start", "rollback"]
            assert bad.history[-1].actor == "controller"
            await s.traffic.settle_on("stable", "tara-stable")  # every replica reloaded the table

            # -- a good candidate: promoted stage by stage ...
            good = await parts.service.start(TRACK, "tara-candidate-good")
            mid = await wait_for(parts, good.id, lambda r: r.stage_index >= 1, 60)
            assert mid.phase is Phase.PROGRESSING
            assert mid.stage_index == 1
            first_token = parts.controller.lease.token
            # ... until its controller dies mid-stage, without a goodbye (no lease release).
            _runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await _runner
            parts.controller.lease.release = _no_release  # type: ignore[method-assign]

        async with controller(s.settings) as (parts, _runner):
            good = await wait_for(parts, good.id, lambda r: r.phase in TERMINAL_PHASES, 90)
            assert good.phase is Phase.SUCCEEDED, good.history[-1]
            assert parts.controller.lease.token is not None
            assert first_token is not None
            assert parts.controller.lease.token > first_token
        decisions = [d.decision for d in good.history]
        assert decisions == ["start", "advance", "advance", "succeed"]
        entries = [d.at for d in good.history]
        print("good canary: stage times", [round(b - a, 1) for a, b in itertools.pairwise(entries)])
        print("bad canary: rolled back after", round(bad.history[-1].at - bad.history[0].at, 1))
        assert all(b - a >= 2.0 for a, b in itertools.pairwise(entries))  # no stage cut short

        await s.traffic.settle_on("stable", "tara-candidate-good")

    good_events = ["started", "promoted", "promoted", "succeeded"]
    await eventually(lambda: len(s.hooks.names(good.id)) >= len(good_events), "the last webhook")
    assert s.hooks.names(bad.id) == ["started", "rolled_back"]
    # The killed controller's events were delivered; its successor sent only newer ones.
    assert s.hooks.names(good.id) == good_events


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED})


async def _no_release() -> None:
    """A killed controller never releases its lease."""
