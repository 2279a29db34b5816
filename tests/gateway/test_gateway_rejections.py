"""``tara_rejected_requests_total`` counts every route's refusals, with bounded labels."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import AUTH, MESSAGES, gateway_settings
from prometheus_client import CollectorRegistry

from tara.gateway.app import Gateway
from tara.gateway.rejections import route_label
from tara.gateway.server import gateway_from_settings

ADMIN = {"Authorization": "Bearer sk-admin-test"}


@contextlib.asynccontextmanager
async def production(tmp_path: Path) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    settings = gateway_settings(
        database_url=f"sqlite:///{tmp_path / 'log.db'}", auth={"admin_key": "sk-admin-test"}
    )
    gateway = gateway_from_settings(settings, registry=CollectorRegistry())
    async with gateway.lifespan():
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client


def counted(gateway: Gateway) -> dict[tuple[str, str], float]:
    found = {}
    for metric in gateway.metrics.registry.collect():
        if metric.name == "tara_rejected_requests":
            for s in metric.samples:
                if s.name.endswith("_total"):
                    found[(s.labels["route"], s.labels["status"])] = s.value
    return found


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1/chat/completions", "chat"),
        ("/v1/feedback", "feedback"),
        ("/v1/models", "models"),
        ("/admin/rollouts/r-1/promote", "admin"),
        ("/admin", "admin"),
        ("/readyz", "probes"),
        ("/openapi.json", "openapi"),
        ("/v1/chat/completions/x", "other"),
        ("/" + "x" * 10_000, "other"),
    ],
)
def test_route_labels_are_a_fixed_set(path: str, label: str) -> None:
    assert route_label(path) == label


async def test_every_route_counts_its_refusals(tmp_path: Path) -> None:
    async with production(tmp_path) as (gateway, client):
        chat = {"model": "tara-tutor", "messages": MESSAGES}
        statuses = [
            (await client.post("/v1/chat/completions", json=chat)).status_code,
            (await client.post("/v1/chat/completions", json={}, headers=AUTH)).status_code,
            (await client.post("/v1/feedback", json={"rating": 3})).status_code,
            (await client.post("/v1/feedback", json={"rating": 3}, headers=AUTH)).status_code,
            (
                await client.post(
                    "/v1/feedback", json={"request_id": "nope", "rating": 3}, headers=AUTH
                )
            ).status_code,
            (await client.post("/v1/feedback", content=b" " * 20_000, headers=AUTH)).status_code,
            (await client.get("/v1/models")).status_code,
            (await client.post("/v1/models", headers=AUTH)).status_code,
            (await client.get("/admin/rollouts", headers=AUTH)).status_code,
            (await client.get("/admin/rollouts/r-none", headers=ADMIN)).status_code,
            # Memory state has no controller to judge a rollout: starting one is refused.
            (await client.post("/admin/rollouts", json={}, headers=ADMIN)).status_code,
            (await client.get("/no/such/route")).status_code,
            (await client.get("/v1/models", headers=AUTH)).status_code,  # fine: not counted
            (await client.get("/healthz")).status_code,
        ]
        seen = counted(gateway)
    assert statuses == [401, 400, 401, 422, 404, 413, 401, 405, 401, 404, 409, 404, 200, 200]
    assert seen == {
        ("chat", "401"): 1,
        ("chat", "400"): 1,
        ("feedback", "401"): 1,
        ("feedback", "422"): 1,
        ("feedback", "404"): 1,
        ("feedback", "413"): 1,
        ("models", "401"): 1,
        ("models", "405"): 1,
        ("admin", "401"): 1,
        ("admin", "404"): 1,
        ("admin", "409"): 1,
        ("other", "404"): 1,
    }
