"""``tara controller``: build the controller from settings, serve its probes, run the loop.

This module is the composition root of the controller: besides judging
rollouts, its leader runs the fine-tuning loop (:mod:`tara.retrain`) on the
same tick and fencing token, unless ``retrain.enabled`` is off.

State comes from :func:`tara.state.open_state`, and must be shared (Redis):
on state in process memory a separate controller would judge rollouts no
gateway serves, so ``tara controller`` refuses it (``tara demo`` embeds a
controller next to its gateway instead). Besides the loop,
a small Starlette app on ``rollout.controller_port`` serves ``/metrics``
(the ``tara_rollout_*`` series), ``/healthz`` (liveness: a tick finished,
well or not, within ``rollout.liveness_timeout``; fails when the loop hangs
or died, which a restart cures) and ``/readyz`` (readiness: the last tick
reached the stores within three tick intervals; fails while Redis is down,
which a restart does not cure; a standby that is not leading is ready too).
On SIGINT/SIGTERM the controller lets a running tick finish
(``rollout.shutdown_timeout``), releases the lease so a standby takes over
at once, drains pending webhooks, then stops the HTTP server.
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
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tara.loops import run_in_loop
from tara.retrain.retrainer import Retrainer
from tara.rollout.config import RolloutSettings
from tara.rollout.controller import Controller
from tara.rollout.metric_source import MetricSource, WindowMetricSource
from tara.rollout.metric_source_prometheus import PrometheusMetricSource
from tara.rollout.service import RolloutService
from tara.rollout.webhooks import WebhookNotifier
from tara.serving import uvicorn_config
from tara.settings import Settings
from tara.state import SharedState, StateNotShared, open_state
from tara.telemetry.metrics import MetricsRecorder

log = logging.getLogger(__name__)

STALE_TICKS = 3
"""``/readyz`` fails when no tick reached the stores for this many tick intervals."""


@dataclass
class ControllerParts:
    """The controller and what it runs on (exposed for tests and ``tara demo``)."""

    controller: Controller
    service: RolloutService
    state: SharedState
    registry: CollectorRegistry
    source: MetricSource
    """Where the controller reads its numbers (``rollout.metric_source``)."""


def build_controller(
    settings: Settings, state: SharedState, registry: CollectorRegistry
) -> tuple[Controller, RolloutService, MetricSource]:
    """A controller over ``state`` (with a lease of its own), and the service and source it uses."""
    cfg = settings.rollout
    metrics = MetricsRecorder.on(registry, settings.subjects, settings.languages)
    service = RolloutService.over(state, settings)
    source: MetricSource = (
        PrometheusMetricSource(cfg.prometheus_url, cfg.prometheus_timeout)
        if cfg.metric_source == "prometheus"
        else WindowMetricSource(state.windows)
    )
    notifier = WebhookNotifier.from_settings(cfg)
    companions = []
    if settings.retrain.enabled:
        companions.append(
            Retrainer(
                settings,
                state.runs,
                state.ledger,
                service,
                notifier,
                metrics,
            )
        )
    controller = Controller(
        service,
        source,
        state.new_lease(cfg.leader_ttl.total_seconds()),
        cfg,
        metrics,
        notifier,
        tracks=service.stable_models,
        companions=companions,
    )
    return controller, service, source


@contextlib.asynccontextmanager
async def controller_parts(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    state: SharedState | None = None,
) -> AsyncIterator[ControllerParts]:
    """Build the controller from settings over ``state`` (default: the settings' state).

    On exit closes the metric source, and the state if it opened it.
    """
    registry = registry if registry is not None else prometheus_client.REGISTRY
    opened = open_state(settings) if state is None else None
    state = opened or state
    assert state is not None
    controller, service, source = build_controller(settings, state, registry)
    try:
        yield ControllerParts(controller, service, state, registry, source)
    finally:
        await source.aclose()
        if opened is not None:
            await opened.aclose()


def controller_app(
    controller: Controller, registry: CollectorRegistry, tick: float, live_for: float = 180.0
) -> Starlette:
    """``/metrics``, ``/healthz`` and ``/readyz`` of a controller (see the module docstring)."""
    started = time.time()

    async def metrics(_request: Request) -> Response:
        return Response(
            prometheus_client.generate_latest(registry),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )

    async def healthz(_request: Request) -> Response:
        last = controller.last_attempt
        age = max(0.0, time.time() - (started if last is None else last))
        if age > live_for:
            body = {"status": "stuck", "last_tick_finished_seconds_ago": round(age, 3)}
            return JSONResponse(body, status_code=503)
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
    """Run until ``stop`` is set (or SIGINT/SIGTERM); with ``once``, one tick and no server.

    Raises :class:`~tara.state.StateNotShared` on state in process memory.
    """
    async with contextlib.aclosing(open_state(settings)) as state:
        state.require_shared("tara controller")
        async with controller_parts(settings, registry, state) as parts:
            if once:
                return await _tick_once(parts.controller, settings.rollout)
            return await _serve(parts, settings.rollout, stop)


async def _tick_once(ctl: Controller, cfg: RolloutSettings) -> int:
    report = await ctl.tick()
    await ctl.shutdown(None, cfg.shutdown_timeout)
    print(json.dumps(dataclasses.asdict(report)))
    return 1 if report.errors else 0


async def _serve(parts: ControllerParts, cfg: RolloutSettings, stop: asyncio.Event | None) -> int:
    ctl = parts.controller
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    app = controller_app(
        ctl,
        parts.registry,
        cfg.tick_interval.total_seconds(),
        cfg.liveness_timeout.total_seconds(),
    )
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
    except (ValueError, StateNotShared) as exc:
        log.error("cannot start the controller: %s", exc)
        return 2
    return result[0] if result else 1
