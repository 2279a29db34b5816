"""Gateway and controller in one process on one state, in memory for ``tara demo``.

One :func:`~tara.state.open_state` on memory gives the gateway, its admin API
and the controller the same routing table, rollout records (fenced by one
lease board) and window stats: the admin API and the controller change the
same rollouts, the gateway routes by the table they write, and the
controller reads what the gateway records. Because the controller takes its
lease on that state, the gateway knows one is embedded and accepts
rollouts. The interaction log is the SQLite file of
``settings.telemetry.sqlite_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from tara.gateway.app import Gateway
from tara.gateway.server import gateway_from_settings
from tara.rollout.controller import Controller
from tara.rollout.controller_server import build_controller
from tara.rollout.service import RolloutService
from tara.serving import running_server
from tara.settings import Settings
from tara.state import SharedState, open_state
from tara.telemetry.window_store import WindowStore


@dataclass
class Embedded:
    """The running parts: the gateway's URL and what the demo watches in-process."""

    base_url: str
    gateway: Gateway
    service: RolloutService
    controller: Controller
    windows: WindowStore
    state: SharedState
    """Everything the parts share (rollouts, routing table, fine-tuning runs ...)."""


@contextlib.asynccontextmanager
async def embedded_stack(
    settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[Embedded]:
    """Serve the gateway on a free loopback port and run the controller loop beside it."""
    registry = registry if registry is not None else CollectorRegistry()
    state = open_state(settings)
    controller, service, source = build_controller(settings, state, registry)
    gateway = gateway_from_settings(settings, registry, state)
    async with running_server(gateway) as base_url:
        runner = asyncio.create_task(controller.run())
        try:
            yield Embedded(base_url, gateway, service, controller, state.windows, state)
        finally:
            await controller.shutdown(runner, settings.rollout.shutdown_timeout)
            await source.aclose()
