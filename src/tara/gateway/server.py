"""``tara serve``: build the gateway from settings and run it under uvicorn until signalled.

The shared state (routing table, window stats, request index, retry memory,
rollout records) comes from :func:`tara.state.open_state`: Redis when
``redis_url`` is set, else process memory. Shut-down is graceful: uvicorn
stops accepting, drains in-flight requests for up to
``server.shutdown_timeout`` seconds, then the lifespan flushes the telemetry
(interaction log within ``telemetry.shutdown_timeout``) and closes the
routing cache, the upstream pool and the state.
"""

from __future__ import annotations

import argparse
import contextlib
import logging

import prometheus_client

from tara.gateway.app import Gateway, build_gateway
from tara.gateway.feedback import feedback_route
from tara.gateway.upstream import redact_url
from tara.retrain.admin_api import retrain_routes
from tara.rollout.admin_api import routes_from_settings
from tara.serving import serve_forever
from tara.settings import Settings
from tara.state import HOW_TO_SHARE, SharedState, open_state
from tara.telemetry.metrics import MetricsRecorder
from tara.telemetry.pipeline import Telemetry

log = logging.getLogger(__name__)


def gateway_from_settings(
    settings: Settings,
    registry: prometheus_client.CollectorRegistry | None = None,
    state: SharedState | None = None,
) -> Gateway:
    """The production gateway: shared state and interaction log from settings.

    Metrics live on ``registry`` (default: the process-wide one); ``state``
    defaults to the one the settings describe. Services are entered in order
    and exited in reverse, so the telemetry flushes while the state is open.
    """
    registry = registry if registry is not None else prometheus_client.REGISTRY
    metrics = MetricsRecorder.on(registry, settings.subjects, settings.languages)
    state = state if state is not None else open_state(settings)
    telemetry = Telemetry(settings, metrics, state)
    return build_gateway(
        settings,
        routing_store=state.routing,
        sinks=telemetry.sinks,
        registry=registry,
        routes=[
            feedback_route(telemetry, metrics.rejection),
            *routes_from_settings(settings, state),
            *retrain_routes(state.runs, state.ledger, settings),
        ],
        services=[contextlib.aclosing(state), telemetry],
    )


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the gateway on ``--host``/``--port`` (default ``server.host``/``server.port``)."""
    host = args.host if args.host is not None else settings.server.host
    port = args.port if args.port is not None else settings.server.port
    try:
        state = open_state(settings)
    except ValueError as exc:
        log.error("cannot start the gateway: %s", exc)
        return 2
    app = gateway_from_settings(settings, state=state)
    upstream = redact_url(settings.upstream.base_url)
    log.info("tara gateway on http://%s:%d -> %s", host, port, upstream)
    if not state.shared:
        log.warning(
            "state is in process memory: no controller can judge rollouts on this gateway, so "
            "it refuses to start them; %s",
            HOW_TO_SHARE,
        )
    serve_forever(app, host, port, settings.server.shutdown_timeout)
    return 0
