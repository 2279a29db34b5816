"""``tara_gateway_overhead_seconds``: the time the gateway adds, total minus upstream waits."""

from __future__ import annotations

import httpx
import pytest
from gateway_harness import AUTH, MESSAGES, UPSTREAM_KEY, ListSink, gateway_settings
from prometheus_client import CollectorRegistry

from tara.gateway.app import build_gateway
from tara.sandbox import running_sandbox
from tara.sandbox.config import Latency, ModelBehaviour, default_config, zero_latency
from tara.serving import running_server

TTFT_S = 0.2
"""The upstream's wait before its first byte: time the gateway spends waiting, not adding."""


@pytest.mark.parametrize("stream", [False, True])
async def test_overhead_is_the_request_time_less_the_upstream_wait(stream: bool) -> None:
    base = zero_latency(default_config())
    slow = ModelBehaviour(
        latency=Latency(ttft_median_ms=TTFT_S * 1000, ttft_sigma=0, token_delay_ms=5)
    )
    config = base.model_copy(
        update={"api_keys": [UPSTREAM_KEY], "models": {**base.models, "m-slow": slow}}
    )
    async with running_sandbox(config) as up:
        settings = gateway_settings(up, tracks={"tara-tutor": {"stable_model": "m-slow"}})
        sink, registry = ListSink(), CollectorRegistry()
        gateway = build_gateway(settings, sinks=[sink], registry=registry)
        body = {"model": "tara-tutor", "messages": MESSAGES, "stream": stream}
        async with running_server(gateway) as url, httpx.AsyncClient(timeout=10) as client:
            for _ in range(3):
                response = await client.post(f"{url}/v1/chat/completions", json=body, headers=AUTH)
                assert response.status_code == 200
            metrics = (await client.get(f"{url}/metrics")).text
    labels = {"track": "tara-tutor", "variant": "stable", "stream": str(stream).lower()}
    count = registry.get_sample_value("tara_gateway_overhead_seconds_count", labels)
    total = registry.get_sample_value("tara_gateway_overhead_seconds_sum", labels)
    assert count == 3
    assert total is not None
    durations = sum(r.latency_s or 0.0 for r in sink.records)
    # Each request waited at least TTFT_S on the upstream, so that much is not overhead.
    assert 0 <= total <= durations - 3 * TTFT_S
    assert "# TYPE tara_gateway_overhead_seconds histogram" in metrics
    other = {**labels, "stream": str(not stream).lower()}
    assert registry.get_sample_value("tara_gateway_overhead_seconds_count", other) is None
