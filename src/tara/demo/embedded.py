"""Gateway and controller in one process on shared in-memory state (``tara demo``).

``tara serve`` and ``tara controller`` each build their own stores; with the
memory backend that would give the admin API, the gateway and the controller
three different routing tables. Here one :class:`MemoryRoutingStore`, one
:class:`MemoryRolloutStore` (fenced by one lease board) and the gateway's own
window stats are shared: the admin API and the controller change the same
rollouts, the gateway routes by the table they write, and the controller
reads what the gateway records. The interaction log is the SQLite file of
``settings.telemetry.sqlite_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from tara.gateway.app import Gateway, build_gateway
from tara.gateway.feedback import feedback_route
from tara.rollout.admin_api import admin_routes, stage_stats_reader
from tara.rollout.controller import Controller
from tara.rollout.lease import MemoryLease, MemoryLeaseBoard
from tara.rollout.rollout_store import MemoryRolloutStore
from tara.rollout.service import RolloutService
from tara.rollout.stats_source import WindowMetricSource
from tara.rollout.store_memory import MemoryRoutingStore
from tara.rollout.webhooks import WebhookNotifier
from tara.serving import running_server
from tara.settings import Settings
from tara.telemetry.metrics import MetricsRecorder
from tara.telemetry.pipeline import Telemetry
from tara.telemetry.window_store import WindowStore


@dataclass
class Embedded:
    """The running parts: the gateway's URL and what the demo watches in-process."""

    base_url: str
    gateway: Gateway
    service: RolloutService
    controller: Controller
    windows: WindowStore


def build_embedded(
    settings: Settings, registry: CollectorRegistry
) -> tuple[Gateway, RolloutService, Controller, WindowStore]:
    """Gateway (feedback and admin routes included) and controller over shared memory stores."""
    cfg = settings.rollout
    metrics = MetricsRecorder.on(registry, settings.subjects, settings.languages)
    stables = {name: t.stable_model for name, t in settings.tracks.items()}
    routing = MemoryRoutingStore()
    board = MemoryLeaseBoard()
    service = RolloutService(
        MemoryRolloutStore(leader_token=lambda: board.token), routing, cfg, stables
    )
    telemetry = Telemetry(settings, metrics)
    source = WindowMetricSource(telemetry.store)
    gateway = build_gateway(
        settings,
        routing_store=routing,
        sinks=telemetry.sinks,
        registry=registry,
        routes=[
            feedback_route(telemetry),
            *admin_routes(service, stage_stats_reader(source)),
        ],
        services=[telemetry],
    )
    controller = Controller(
        service,
        source,
        MemoryLease(cfg.leader_ttl.total_seconds(), board=board),
        cfg,
        metrics,
        WebhookNotifier.from_settings(cfg),
        tracks=stables,
    )
    return gateway, service, controller, telemetry.store


@contextlib.asynccontextmanager
async def embedded_stack(
    settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[Embedded]:
    """Serve the gateway on a free loopback port and run the controller loop beside it."""
    registry = registry if registry is not None else CollectorRegistry()
    gateway, service, controller, windows = build_embedded(settings, registry)
    async with running_server(gateway) as base_url:
        runner = asyncio.create_task(controller.run())
        try:
            yield Embedded(base_url, gateway, service, controller, windows)
        finally:
            await controller.shutdown(runner, settings.rollout.shutdown_timeout)
