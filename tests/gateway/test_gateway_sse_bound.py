"""The SSE tap's bound: an upstream whose events never end is relayed, not hoarded.

A real aiohttp upstream streams a ``data:`` line that never gets its blank
line, 40 KiB a write. The tap may hold at most ``upstream.max_sse_event_bytes``
of an unfinished event; past that it must give up observing, hand the client
everything it holds and relay the rest as it comes, and count the give-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from gateway_harness import AUTH, MESSAGES, ListSink, gateway_settings
from prometheus_client import CollectorRegistry

from tara.gateway.app import build_gateway
from tara.gateway.sse import StreamTap
from tara.sandbox.server import serving
from tara.serving import running_server

pytestmark = pytest.mark.integration

FIRST = b'data: {"choices":[{"index":0,"delta":{"content":"Namaste"}}]}\n\n'
PIECE = b"x" * (40 * 1024)
PIECES = 8
"""320 KiB of one unfinished event, after one well-formed event."""


@contextlib.asynccontextmanager
async def endless_event_upstream() -> AsyncIterator[str]:
    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(FIRST + b"data: ")
        for _ in range(PIECES):
            await asyncio.sleep(0.005)  # separate reads; nothing is timed
            await response.write(PIECE)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}/v1"


async def test_an_event_that_never_ends_is_relayed_whole_and_the_give_up_counted() -> None:
    sink, registry = ListSink(), CollectorRegistry()
    async with endless_event_upstream() as upstream:
        settings = gateway_settings(upstream, upstream={"max_sse_event_bytes": 64 * 1024})
        gateway = build_gateway(settings, sinks=[sink], registry=registry)
        async with running_server(gateway) as base, httpx.AsyncClient(timeout=10) as client:
            body = {"model": "tara-tutor", "messages": MESSAGES, "stream": True}
            async with client.stream(
                "POST", f"{base}/v1/chat/completions", json=body, headers=AUTH
            ) as response:
                received = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.status_code == 200
    assert received == FIRST + b"data: " + PIECE * PIECES
    dropped = registry.get_sample_value(
        "tara_telemetry_dropped_total", {"sink": "stream_tap", "reason": "event_too_large"}
    )
    assert dropped == 1
    [record] = sink.records
    assert record.status == 200
    assert record.answer == "Namaste"


def test_the_tap_holds_no_more_than_its_bound() -> None:
    tap = StreamTap(drop_usage_chunk=False, max_pending=100)
    assert tap.feed(b"data: " + b"a" * 50) == b""
    assert not tap.gave_up
    out = tap.feed(b"b" * 60)
    assert out == b"data: " + b"a" * 50 + b"b" * 60
    assert tap.gave_up
    assert tap.feed(b"\r\nanything\r\n\r\n") == b"\r\nanything\r\n\r\n"
