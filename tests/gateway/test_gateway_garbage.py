"""A finished request leaves nothing for the cyclic garbage collector.

Objects that only the collector can free pile up between collections, and
collecting them is what held the event loop for 50-150 ms under load (issue
16: found with ``bench/lagprobe.py``). A request's objects must go the moment
it ends, by reference counting alone.
"""

from __future__ import annotations

import gc
from collections import Counter
from types import FrameType, TracebackType
from typing import Any

import httpx
import pytest
from gateway_harness import AUTH, MESSAGES, UPSTREAM_KEY, ListSink, closed_url, gateway_settings
from prometheus_client import CollectorRegistry

from collector import collector_off
from tara.gateway.app import build_gateway
from tara.gateway.chat import DisconnectWatch
from tara.gateway.chat_request import ChatRequest
from tara.gateway.exchange import Exchange
from tara.sandbox import running_sandbox
from tara.sandbox.config import (
    Errors,
    Latency,
    ModelBehaviour,
    SandboxConfig,
    default_config,
    zero_latency,
)
from tara.serving import running_server

GATEWAY_TYPES = (Exchange, DisconnectWatch, ChatRequest)


def _describe(garbage: list[Any]) -> str:
    """For the failure message: the frames in the garbage, and what holds each gateway object."""
    frames = Counter(
        f"{o.f_code.co_name}:{o.f_lineno}" for o in garbage if isinstance(o, FrameType)
    ).most_common(12)
    ids = {id(o) for o in garbage}
    held_by = Counter(
        f"{type(o).__name__} <- {type(r).__name__}"
        for o in garbage
        if isinstance(o, GATEWAY_TYPES)
        for r in gc.get_referrers(o)
        if id(r) in ids
    )
    return f"frames {frames}; held by {sorted(held_by.items())}"


def _cyclic_garbage() -> list[Any]:
    """What a full collection finds unreachable now (kept for inspection, then dropped)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _sandbox_with(model: str, behaviour: ModelBehaviour) -> SandboxConfig:
    """The instant sandbox, with the gateway's upstream key and one extra model."""
    base = zero_latency(default_config())
    return base.model_copy(
        update={"api_keys": [UPSTREAM_KEY], "models": {**base.models, model: behaviour}}
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_served_requests_leave_no_cyclic_garbage(stream: bool) -> None:
    # Slower than the disconnect watch's delay, so every request starts and stops a watcher.
    slow = ModelBehaviour(latency=Latency(ttft_median_ms=30, ttft_sigma=0, token_delay_ms=1))
    async with running_sandbox(_sandbox_with("m-slow", slow)) as up:
        settings = gateway_settings(
            up,
            tracks={"tara-tutor": {"stable_model": "m-slow"}},
            server={"disconnect_watch_after": 0.005},
        )
        sink = ListSink()
        gateway = build_gateway(settings, sinks=[sink], registry=CollectorRegistry())
        body = {"model": "tara-tutor", "messages": MESSAGES, "stream": stream}
        async with running_server(gateway) as url, httpx.AsyncClient(timeout=10) as client:
            with collector_off():
                for _ in range(5):
                    response = await client.post(
                        f"{url}/v1/chat/completions", json=body, headers=AUTH
                    )
                    assert response.status_code == 200
                garbage = _cyclic_garbage()
    assert [r.status for r in sink.records] == [200] * 5
    left = [type(o).__name__ for o in garbage if isinstance(o, GATEWAY_TYPES)]
    assert left == [], _describe(garbage)


def _gateway_garbage(garbage: list[Any]) -> list[str]:
    """The garbage the gateway made: frames, tracebacks, exceptions and its own objects.

    (The test's httpx client and, on asyncio's own event loop, closed socket
    transports leave cycles of their own; neither is the gateway's.)
    """
    return sorted(
        {
            type(o).__name__
            for o in garbage
            if isinstance(o, (FrameType, TracebackType, BaseException))
            or type(o).__module__.startswith("tara.")
        }
    )


FAILURES = {
    "upstream_5xx": {"model": "tara-tutor", "messages": MESSAGES},
    "upstream_refused": {"model": "tara-tutor", "messages": MESSAGES},
    "bad_body": {"model": "tara-tutor", "messages": "not a list"},
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_failed_requests_leave_no_cyclic_garbage(failure: str) -> None:
    # Servers collect cyclic garbage once in minutes (tara.garbage): an error storm must
    # not fill memory with the tracebacks, retry state and connections of failed requests.
    failing = ModelBehaviour(
        latency=zero_latency(default_config()).models["tara-stable"].latency,
        errors=Errors(rate=1.0, kinds={"server_error": 1.0}, retry_after_seconds=0),
    )
    async with running_sandbox(_sandbox_with("m-fail", failing)) as up:
        upstream = closed_url() if failure == "upstream_refused" else up
        settings = gateway_settings(upstream, tracks={"tara-tutor": {"stable_model": "m-fail"}})
        gateway = build_gateway(settings, sinks=[ListSink()], registry=CollectorRegistry())
        async with running_server(gateway) as url, httpx.AsyncClient(timeout=10) as client:
            with collector_off():
                statuses = [
                    (
                        await client.post(
                            f"{url}/v1/chat/completions", json=FAILURES[failure], headers=AUTH
                        )
                    ).status_code
                    for _ in range(5)
                ]
                garbage = _cyclic_garbage()
    assert statuses == [400 if failure == "bad_body" else 502] * 5
    assert _gateway_garbage(garbage) == [], _describe(garbage)
