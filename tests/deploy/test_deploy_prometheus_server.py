"""The Prometheus test server itself: it starts, scrapes, loads Tara's rules and evaluates them.

One server serves the whole module (Prometheus 2.x hands new targets to its
scrapers only every 5 s, so each new server costs seconds). It scrapes itself,
a port nobody listens on, and a port where one test serves a metrics app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, make_asgi_app
from prometheus_server import (
    PrometheusServer,
    Sample,
    prometheus_fixture,  # noqa: F401 - provides the ``prometheus`` fixture
    require_prometheus,
    running_prometheus,
)
from starlette.applications import Starlette
from starlette.routing import Mount

from tara.serving import free_port, running_server

Start = Callable[[Sequence[str]], PrometheusServer]


class Setup(NamedTuple):
    server: PrometheusServer
    dead_port: int
    app_port: int


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    require_prometheus()
    dead_port, app_port = free_port(), free_port()
    targets = [f"127.0.0.1:{dead_port}", f"127.0.0.1:{app_port}"]
    with running_prometheus(targets) as server:
        yield Setup(server, dead_port, app_port)


def _values(result: list[Sample]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def test_scrapes_itself(setup: Setup) -> None:
    result = setup.server.wait_for('up{job="prometheus"}', lambda r: _values(r) == [1.0])
    assert result[0]["metric"]["instance"] == setup.server.url.removeprefix("http://")


def test_loads_tara_rules(setup: Setup) -> None:
    body = httpx.get(f"{setup.server.url}/api/v1/rules", timeout=5).json()
    groups = {g["name"]: g for g in body["data"]["groups"]}
    assert {"tara-gateway-5m", "tara-feedback-1h", "tara-canary", "tara-gateway-health"} <= set(
        groups
    )
    alerts = {r["name"] for g in groups.values() for r in g["rules"] if r["type"] == "alerting"}
    assert {"TaraCanaryErrorRateHigh", "TaraRedisUnreachable", "TaraGatewayDown"} <= alerts
    assert all(g["interval"] == 1 for g in groups.values())


def test_unreachable_gateway_is_down_and_alerting(setup: Setup) -> None:
    dead = f'instance="127.0.0.1:{setup.dead_port}"'
    setup.server.wait_for(f'up{{job="tara-gateway",{dead}}}', lambda r: _values(r) == [0.0])
    pending = setup.server.wait_for(
        f'ALERTS{{alertname="TaraGatewayDown",{dead}}}', lambda r: len(r) == 1
    )
    assert pending[0]["metric"]["alertstate"] == "pending"


async def test_recording_rules_evaluate_on_scraped_metrics(setup: Setup) -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "tara_requests",
        "requests",
        ["track", "variant", "subject", "language", "status"],
        registry=registry,
    )
    requests.labels("tara-tutor", "canary", "math", "hi", "200").inc(10)
    failed = requests.labels("tara-tutor", "canary", "math", "hi", "502")
    app = Starlette(routes=[Mount("/metrics", app=make_asgi_app(registry))])
    server = setup.server
    async with running_server(app, port=setup.app_port):
        live = f'up{{job="tara-gateway",instance="127.0.0.1:{setup.app_port}"}}'
        await server.wait_for_async(live, lambda r: _values(r) == [1.0])
        failed.inc(5)
        ratio = await server.wait_for_async(
            'track_variant:tara_request_error_ratio:rate5m{variant="canary"}',
            lambda r: len(r) == 1 and _values(r)[0] > 0,
        )
    assert ratio[0]["metric"] == {
        "__name__": "track_variant:tara_request_error_ratio:rate5m",
        "track": "tara-tutor",
        "variant": "canary",
    }
    assert _values(ratio) == [1.0]


def test_factory_fixture_starts_and_stops_a_server(prometheus: Start) -> None:
    server = prometheus([])
    assert httpx.get(f"{server.url}/-/ready", timeout=5).status_code == 200
    [sample] = server.query("vector(42)")
    assert sample["value"][1] == "42"
