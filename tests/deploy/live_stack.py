"""A live Tara deployment in a background thread: sandbox, gateway replicas, simulated students.

:class:`LiveStack` runs, in its own thread and event loop (so the servers keep
answering Prometheus while pytest runs synchronous test code), the sandbox
upstream, one gateway per given port built by the production wiring
(:func:`~tara.gateway.server.gateway_from_settings`: Redis routing table,
telemetry pipeline, feedback route) on the given loopback ports, and a
:class:`~live_traffic.Classroom` of students. Shared state lives in the real
Redis under a private namespace, removed at the end.

The real rollout controller runs beside them on the same Redis namespace,
its ``/metrics`` app on a port of its own; :class:`RolloutDriver` starts a canary on
the whole track and ticks the controller by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio as aioredis
from live_traffic import Classroom, Student, classroom
from prometheus_client import CollectorRegistry

from tara.gateway.server import gateway_from_settings
from tara.rollout.bucketing import in_canary
from tara.rollout.controller_server import ControllerParts, controller_app, controller_parts
from tara.rollout.routing import Segment
from tara.sandbox import Errors, SandboxConfig, default_config, running_sandbox, zero_latency
from tara.serving import running_server
from tara.settings import Settings
from tcp_relay import REDIS_URL

T = TypeVar("T")

TRACK = "tara-tutor"
CANARY_MODEL = "tara-candidate-bad"
SEGMENT = Segment()
CLIENT_KEY = "sk-live-client"
UPSTREAM_KEY = "sk-live-upstream"
START_TIMEOUT = 30.0
MAX_TRAFFIC_SECONDS = 120.0
"""The students go home after this long even if nobody stops them (the load stays bounded)."""


def sandbox_config() -> SandboxConfig:
    """Built-in models at zero latency; the bad candidate fails half its attempts.

    Half (not the built-in fifth) so that within seconds some canary requests
    exhaust their retries and fall back to stable; ``cut`` breaks streams
    after their 200, the failures that are not errors.
    """
    config = zero_latency(default_config())
    errors = Errors(rate=0.5, kinds={"server_error": 3, "unavailable": 2, "reset": 1, "cut": 2})
    bad = config.models[CANARY_MODEL].model_copy(update={"errors": errors})
    models = {**config.models, CANARY_MODEL: bad}
    return config.model_copy(update={"models": models, "api_keys": [UPSTREAM_KEY]})


def gateway_settings(upstream: str, namespace: str, log_path: Path) -> Settings:
    """One replica's settings: shared Redis state, its own SQLite log, short timers."""
    return Settings(
        upstream={
            "base_url": upstream,
            "api_key": UPSTREAM_KEY,
            "retry_attempts": 2,
            "retry_initial_backoff": 0.001,
            "retry_max_backoff": 0.005,
            "retry_after_cap": 0.01,
        },
        auth={"client_keys": [CLIENT_KEY]},
        state_backend="redis",
        redis_url=REDIS_URL,
        redis_namespace=namespace,
        database_url=f"sqlite:///{log_path}",
        routing_refresh_seconds=0.1,
        stats={"flush_interval": 0.2},
        telemetry={"flush_interval": 0.2},
    )


def with_canary_students(
    students: Sequence[Student], salt: str, weight_bp: int, wanted: int = 3
) -> list[Student]:
    """The classroom with its first ``wanted`` students renamed into the canary's buckets.

    A rollout's salt is random, so a dozen students at 10% would all be on stable
    about once in four runs, and no canary panel would ever get data.
    """
    renamed = list(students)
    for i, student in enumerate(renamed[:wanted]):
        ids = (f"{student.student_id}-{n}" for n in range(100_000))
        new_id = next(s for s in ids if in_canary(salt, s, weight_bp))
        renamed[i] = dataclasses.replace(student, student_id=new_id)
    return renamed


class RolloutDriver:
    """The real rollout controller, ticked by hand so its decisions land when the test wants.

    Its analysis is not due for minutes (the first stage is analysed every
    ``intensive_interval``), so within the test it decides only what it is told.
    """

    def __init__(self, parts: ControllerParts) -> None:
        self.parts = parts
        self.rollout_id: str | None = None

    async def begin(self) -> None:
        """Start the canary on the whole track (stage 0, 10%) and tick: the ``start`` decision."""
        rollout = await self.parts.service.start(TRACK, CANARY_MODEL, actor="live-test")
        self.rollout_id = rollout.id
        await self.tick()

    async def promote(self) -> None:
        """An operator's promotion to the next stage, then the tick that reports it."""
        assert self.rollout_id is not None
        await self.parts.service.promote(self.rollout_id, actor="live-test")
        await self.tick()

    async def tick(self) -> None:
        """One controller tick; it must lead and reach its stores."""
        report = await self.parts.controller.tick()
        assert report.leader, report
        assert not report.errors, report


class LiveStack:
    """The deployment in a background thread; a context manager that starts and stops it."""

    def __init__(
        self, ports: Sequence[int], controller_port: int, data_dir: Path, *, students: int = 12
    ) -> None:
        self.ports = tuple(ports)
        self.controller_port = controller_port
        self.data_dir = data_dir
        self.namespace = f"tara-test-live-{uuid.uuid4().hex[:12]}"
        self.classroom = Classroom(
            [f"http://127.0.0.1:{p}" for p in self.ports],
            CLIENT_KEY,
            TRACK,
            classroom(students, random.Random(7)),
            seed=7,
        )
        self.rollout: RolloutDriver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-stack", daemon=True)

    def __enter__(self) -> LiveStack:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            self._shutdown()
            msg = f"the live stack did not start: {self._error!r}"
            raise RuntimeError(msg) from self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shutdown()
        if self._error is not None and exc is None:
            msg = "the live stack failed"
            raise RuntimeError(msg) from self._error

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run a coroutine on the stack's loop from the test thread and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def check(self) -> None:
        """Raise if the stack's thread failed (the servers or the traffic died)."""
        if self._error is not None:
            msg = "the live stack failed"
            raise RuntimeError(msg) from self._error

    def _shutdown(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        redis = aioredis.Redis.from_url(REDIS_URL)
        try:
            async with running_sandbox(sandbox_config(), seed=7) as upstream:
                await self._serve(upstream)
        finally:
            keys = [k async for k in redis.scan_iter(match=f"{self.namespace}:*", count=1000)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()

    async def _serve(self, upstream: str) -> None:
        assert self._stop is not None
        async with contextlib.AsyncExitStack() as stack:
            for n, port in enumerate(self.ports):
                settings = gateway_settings(upstream, self.namespace, self.data_dir / f"log-{n}.db")
                gateway = gateway_from_settings(settings, CollectorRegistry())
                await stack.enter_async_context(running_server(gateway, port=port))
            # The controller shares the replicas' Redis namespace; its fine-tuning loop reads
            # an interaction log of its own, empty (the replicas' logs are theirs).
            settings = gateway_settings(upstream, self.namespace, self.data_dir / "unused.db")
            parts = await stack.enter_async_context(controller_parts(settings, CollectorRegistry()))
            tick = settings.rollout.tick_interval.total_seconds()
            app = controller_app(parts.controller, parts.registry, tick)
            await stack.enter_async_context(running_server(app, port=self.controller_port))
            self.rollout = RolloutDriver(parts)
            await self.rollout.begin()
            assert self.rollout.rollout_id is not None
            started = await parts.service.get(self.rollout.rollout_id)
            self.classroom.students = with_canary_students(
                self.classroom.students, started.salt, started.weight_bp
            )
            traffic = asyncio.create_task(self.classroom.run(self._stop))
            asyncio.get_running_loop().call_later(MAX_TRAFFIC_SECONDS, self._stop.set)
            self._ready.set()
            await traffic

    @property
    def details(self) -> dict[str, Any]:
        """What the students saw, for assertion messages."""
        tally = self.classroom.tally
        return {"answers": dict(tally.answers), "feedback": dict(tally.feedback)}
