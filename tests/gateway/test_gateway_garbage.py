"""A finished request leaves nothing for the cyclic garbage collector.

Objects that only the collector can free pile up between collections, and
collecting them is what held the event loop for 50-150 ms under load (issue
16: found with ``bench/lagprobe.py``). A request's objects must go the moment
it ends, by reference counting alone.
"""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest
from gateway_harness import AUTH, MESSAGES, UPSTREAM_KEY, ListSink, gateway_settings
from prometheus_client import CollectorRegistry

from tara.gateway.app import build_gateway
from tara.gateway.chat import DisconnectWatch
from tara.gateway.chat_request import ChatRequest
from tara.gateway.exchange import Exchange
from tara.sandbox import running_sandbox
from tara.sandbox.config import Latency, ModelBehaviour, default_config, zero_latency
from tara.serving import running_server

GATEWAY_TYPES = (Exchange, DisconnectWatch, ChatRequest)


def _cyclic_garbage() -> list[Any]:
    """What a full collection finds unreachable now (kept for inspection, then dropped)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("stream", [False, True])
async def test_served_requests_leave_no_cyclic_garbage(stream: bool) -> None:
    base = zero_latency(default_config())
    # Slower than the disconnect watch's delay, so every request starts and stops a watcher.
    slow = ModelBehaviour(latency=Latency(ttft_median_ms=30, ttft_sigma=0, token_delay_ms=1))
    config = base.model_copy(
        update={"api_keys": [UPSTREAM_KEY], "models": {**base.models, "m-slow": slow}}
    )
    async with running_sandbox(config) as up:
        settings = gateway_settings(
            up,
            tracks={"tara-tutor": {"stable_model": "m-slow"}},
            server={"disconnect_watch_after": 0.005},
        )
        sink = ListSink()
        gateway = build_gateway(settings, sinks=[sink], registry=CollectorRegistry())
        body = {"model": "tara-tutor", "messages": MESSAGES, "stream": stream}
        async with running_server(gateway) as url, httpx.AsyncClient(timeout=10) as client:
            _cyclic_garbage()
            gc.disable()
            try:
                for _ in range(5):
                    response = await client.post(
                        f"{url}/v1/chat/completions", json=body, headers=AUTH
                    )
                    assert response.status_code == 200
                left = [type(o).__name__ for o in _cyclic_garbage() if isinstance(o, GATEWAY_TYPES)]
            finally:
                gc.enable()
    assert [r.status for r in sink.records] == [200] * 5
    assert left == []
