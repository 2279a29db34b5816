"""``tara serve``: build the gateway from settings and run it under uvicorn until signalled.

The shared state (routing table, window stats, request index, retry memory,
rollout records) comes from :func:`tara.state.open_state`: Redis when
``redis_url`` is set, else process memory. It refuses to start with the
built-in development keys where anyone but this machine's own processes could
use them (:func:`dev_keys_refusal`). Shut-down is graceful: uvicorn
stops accepting, drains in-flight requests for up to
``server.shutdown_timeout`` seconds, then the lifespan flushes the telemetry
(interaction log within ``telemetry.shutdown_timeout``) and closes the
routing cache, the upstream pool and the state.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging

import prometheus_client

from tara.gateway.app import Gateway, build_gateway
from tara.gateway.feedback import feedback_route
from tara.gateway.upstream import redact_url
from tara.retrain.admin_api import retrain_routes
from tara.rollout.admin_api import routes_from_settings
from tara.serving import serve_forever
from tara.settings import DEV_ADMIN_KEY, DEV_CLIENT_KEY, Settings
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
            feedback_route(telemetry),
            *routes_from_settings(settings, state),
            *retrain_routes(state.runs, state.ledger, settings),
        ],
        services=[contextlib.aclosing(state), telemetry],
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def dev_keys_refusal(settings: Settings, host: str) -> str | None:
    """Why the gateway must not start with these keys on ``host``, or ``None`` if it may.

    The built-in development client and admin keys are published in the
    README: they are fine for a gateway only this machine can reach, and
    refused when it listens beyond loopback or shares Redis or PostgreSQL
    with other replicas (a production deployment). Auth turned off is an
    explicit choice and only warned about.
    """
    if not settings.auth.enabled:
        return None
    shared = [
        what
        for what, used in (
            (f"listens on {host}", not _loopback(host)),
            ("uses Redis", settings.use_redis),
            ("uses PostgreSQL", settings.database_url is not None),
        )
        if used
    ]
    dev = [
        variable
        for variable, used in (
            (
                "TARA_AUTH__CLIENT_KEYS",
                any(k.get_secret_value() == DEV_CLIENT_KEY for k in settings.auth.client_keys),
            ),
            ("TARA_AUTH__ADMIN_KEY", settings.auth.admin_key.get_secret_value() == DEV_ADMIN_KEY),
        )
        if used
    ]
    if not shared or not dev:
        return None
    return (
        f"the gateway {' and '.join(shared)} but would accept the built-in development "
        f"keys; set {' and '.join(dev)} (auth.client_keys, auth.admin_key) to keys of "
        "your own, or pass --insecure-dev-keys to start anyway"
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
    refusal = dev_keys_refusal(settings, host)
    if refusal is not None:
        if not args.insecure_dev_keys:
            log.error("refusing to start: %s", refusal)
            return 2
        log.warning("starting with the development keys (--insecure-dev-keys): %s", refusal)
    app = gateway_from_settings(settings, state=state)
    upstream = redact_url(settings.upstream.base_url)
    log.info("tara gateway on http://%s:%d -> %s", host, port, upstream)
    if not state.shared:
        log.warning(
            "state is in process memory: no controller can judge rollouts on this gateway, so "
            "it refuses to start them; %s",
            HOW_TO_SHARE,
        )
    srv = settings.server
    serve_forever(
        app,
        host,
        port,
        srv.shutdown_timeout,
        gc_interval=srv.gc_interval,
        gc_growth_limit=srv.gc_growth_limit,
    )
    return 0
