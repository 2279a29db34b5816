"""Shared helpers for the gateway tests: settings, an in-process client, a recording sink."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from tara.gateway.app import Gateway, build_gateway
from tara.rollout.routing import CanaryRoute, RoutingTable, Segment, TrackRoute
from tara.rollout.routing_store import RoutingStore
from tara.serving import free_port
from tara.settings import Settings
from tara.telemetry.interactions import Interaction, InteractionSink

CLIENT_KEY = "sk-client-test"
UPSTREAM_KEY = "sk-upstream-SECRET-4242"
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
MESSAGES = [{"role": "user", "content": "What is 7 x 8?"}]


def closed_url() -> str:
    """A base URL where nothing listens (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}/v1"


def gateway_settings(upstream_url: str | None = None, **overrides: Any) -> Settings:
    """Settings for a test gateway: test keys, short timeouts, tiny backoff."""
    upstream = {
        "base_url": upstream_url or closed_url(),
        "api_key": UPSTREAM_KEY,
        "connect_timeout": 2.0,
        "first_byte_timeout": 5.0,
        "idle_timeout": 5.0,
        "total_timeout": 20.0,
        "retry_attempts": 3,
        "retry_initial_backoff": 0.001,
        "retry_max_backoff": 0.005,
        "retry_after_cap": 0.01,
        **overrides.pop("upstream", {}),
    }
    auth = {"client_keys": [CLIENT_KEY], **overrides.pop("auth", {})}
    return Settings(
        upstream=upstream,
        auth=auth,
        routing_refresh_seconds=overrides.pop("routing_refresh_seconds", 0.05),
        **overrides,
    )


class ListSink:
    """Keeps every interaction it is given."""

    def __init__(self) -> None:
        self.records: list[Interaction] = []

    def record(self, interaction: Interaction) -> None:
        self.records.append(interaction)


def canary_table(
    model: str,
    weight_bp: int,
    *,
    version: int = 1,
    track: str = "tara-tutor",
    stable: str = "tara-stable",
    subject: str | None = None,
    language: str | None = None,
) -> RoutingTable:
    """A table with one canary on ``track``."""
    canary = CanaryRoute("r1", Segment(subject, language), model, "salt-1", weight_bp)
    return RoutingTable(version, {track: TrackRoute(stable, (canary,))})


@contextlib.asynccontextmanager
async def in_process(
    settings: Settings,
    *,
    sinks: Sequence[InteractionSink] = (),
    store: RoutingStore | None = None,
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """A started gateway and an httpx client talking to it in-process."""
    gateway = build_gateway(settings, routing_store=store, sinks=sinks)
    async with gateway.lifespan():
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client
