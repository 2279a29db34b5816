"""``tara controller``: build the controller from settings, serve its probes, run the loop.

State lives in Redis when ``settings.use_redis`` (rollout records, routing
table, window stats and the leader lease, all under ``redis_namespace``),
else in process memory (one process only: ``tara demo``). Besides the loop,
a small Starlette app on ``rollout.controller_port`` serves ``/metrics``
(the ``tara_rollout_*`` series), ``/healthz`` (the loop is alive) and
``/readyz`` (the last tick reached the stores recently; a standby that is
not leading is ready too). On SIGINT/SIGTERM the controller lets a running
tick finish (``rollout.shutdown_timeout``), releases the lease so a standby
takes over at once, drains pending webhooks, then stops the HTTP server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass

import prometheus_client
import redis.asyncio as aioredis
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tara.loops import run_in_loop
from tara.rollout.controller import Controller
from tara.rollout.lease import MemoryLease, MemoryLeaseBoard, RedisLease
from tara.rollout.metric_source import MetricSource, WindowMetricSource
from tara.rollout.metric_source_prometheus import PrometheusMetricSource
from tara.rollout.rollout_store import RolloutStore
from tara.rollout.rollout_store_memory import MemoryRolloutStore
from tara.rollout.rollout_store_redis import RedisRolloutStore
from tara.rollout.routing_store import RoutingStore
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.rollout.service import RolloutService
from tara.rollout.webhooks import WebhookNotifier
from tara.serving import uvicorn_config
from tara.settings import Settings
from tara.telemetry.metrics import MetricsRecorder
from tara.telemetry.window_store import WindowStore
from tara.telemetry.window_store_memory import MemoryWindowStore
from tara.telemetry.window_store_redis import RedisWindowStore

log = logging.getLogger(__name__)

STALE_TICKS = 3
"""``/readyz`` fails when no tick reached the stores for this many tick intervals."""


@dataclass
class ControllerParts:
    """The controller and what it runs on (exposed for tests and ``tara demo``)."""

    controller: Controller
    service: RolloutService
    windows: WindowStore
    registry: CollectorRegistry
    redis: aioredis.Redis | None = None
    source: MetricSource | None = None
    """Where the controller reads its numbers (``rollout.metric_source``)."""


@contextlib.asynccontextmanager
async def controller_parts(
    settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[ControllerParts]:
    """Build the controller from settings; closes the Redis client it opened on exit."""
    registry = registry if registry is not None else prometheus_client.REGISTRY
    cfg = settings.rollout
    metrics = MetricsRecorder.on(registry, settings.subjects, settings.languages)
    stables = {name: t.stable_model for name, t in settings.tracks.items()}
    client: aioredis.Redis | None = None
    rollouts: RolloutStore
    routing: RoutingStore
    windows: WindowStore
    ttl = cfg.leader_ttl.total_seconds()
    if settings.use_redis:
        if settings.redis_url is None:
            msg = "state_backend is 'redis' but redis_url is not set (TARA_REDIS_URL)"
            raise ValueError(msg)
        client = aioredis.Redis.from_url(settings.redis_url)
        ns = settings.redis_namespace
        rollouts = RedisRolloutStore(client, ns)
        routing = RedisRoutingStore(client, ns)
        windows = RedisWindowStore(client, namespace=ns, settings=settings.stats)
        lease: RedisLease | MemoryLease = RedisLease(client, ns, ttl)
    else:
        board = MemoryLeaseBoard()
        rollouts = MemoryRolloutStore(leader_token=lambda: board.token)
        routing = MemoryRoutingStore()
        windows = MemoryWindowStore(settings.stats)
        lease = MemoryLease(ttl, board=board)
    service = RolloutService(rollouts, routing, cfg, stables)
    source: MetricSource = (
        PrometheusMetricSource(cfg.prometheus_url, cfg.prometheus_timeout)
        if cfg.metric_source == "prometheus"
        else WindowMetricSource(windows)
    )
    controller = Controller(
        service,
        source,
        lease,
        cfg,
        metrics,
        WebhookNotifier.from_settings(cfg),
        tracks=stables,
    )
    try:
        yield ControllerParts(controller, service, windows, registry, client, source)
    finally:
        await source.aclose()
        if client is not None:
            await client.aclose()


def controller_app(controller: Controller, registry: CollectorRegistry, tick: float) -> Starlette:
    """``/metrics``, ``/healthz`` and ``/readyz`` of a controller."""

    async def metrics(_request: Request) -> Response:
        return Response(
            prometheus_client.generate_latest(registry),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        last = controller.last_tick
        age = None if last is None else max(0.0, time.time() - last)
        ready = age is not None and age <= STALE_TICKS * tick + 1.0
        body = {
            "ready": ready,
            "leader": controller.lease.token is not None,
            "token": controller.lease.token,
            "last_tick_age_seconds": age,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the controller must stop first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run_controller(
    settings: Settings,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
    registry: CollectorRegistry | None = None,
) -> int:
    """Run until ``stop`` is set (or SIGINT/SIGTERM); with ``once``, one tick and no server."""
    cfg = settings.rollout
    async with controller_parts(settings, registry) as parts:
        ctl = parts.controller
        if once:
            report = await ctl.tick()
            await ctl.shutdown(None, cfg.shutdown_timeout)
            print(json.dumps(dataclasses.asdict(report)))
            return 1 if report.errors else 0
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
        app = controller_app(ctl, parts.registry, cfg.tick_interval.total_seconds())
        config = uvicorn_config(app, cfg.controller_host, cfg.controller_port, 1.0)
        config.loop = "none"
        server = _Server(config)
        serving = asyncio.create_task(server.serve())
        runner = asyncio.create_task(ctl.run())
        log.info(
            "tara controller: probes on http://%s:%d, ticking every %.1fs",
            cfg.controller_host,
            cfg.controller_port,
            cfg.tick_interval.total_seconds(),
        )
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, serving}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        log.info("tara controller stopping (up to %.0fs)", cfg.shutdown_timeout)
        await ctl.shutdown(runner, cfg.shutdown_timeout)
        server.should_exit = True
        await serving
        return 0


def controller_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara controller [--once]``."""
    result: list[int] = []

    async def main() -> None:
        result.append(await run_controller(settings, once=args.once))

    try:
        run_in_loop(main())
    except ValueError as exc:
        log.error("cannot start the controller: %s", exc)
        return 2
    return result[0] if result else 1
