"""The SSE relay end to end: an upstream that splits CRLF line ends between writes.

A real aiohttp upstream replays a recorded sandbox stream in CRLF framing,
each write ending between the CR and the LF of an event's end (with a pause,
so the gateway reads them separately). Through a real gateway, the official
SDK must see the whole answer and no usage chunk it did not ask for, and the
interaction record must hold the answer and the token counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from aiohttp import web
from gateway_harness import CLIENT_KEY, MESSAGES, ListSink, gateway_settings
from test_gateway_sse import reference

from tara.gateway.app import build_gateway
from tara.sandbox.server import serving
from tara.serving import running_server

pytestmark = pytest.mark.integration

RECORDED = (Path(__file__).parent / "streams" / "sandbox-hindi-usage.sse").read_bytes()
CRLF = RECORDED.replace(b"\n", b"\r\n")


def pieces() -> list[bytes]:
    """The stream cut after the CR of every event's last line end."""
    cuts = [i + 3 for i in range(len(CRLF)) if CRLF.startswith(b"\r\n\r\n", i)]
    return [CRLF[a:b] for a, b in zip([0, *cuts], [*cuts, len(CRLF)], strict=True)]


@contextlib.asynccontextmanager
async def splitting_upstream() -> AsyncIterator[str]:
    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces():
            await response.write(piece)
            await asyncio.sleep(0.005)  # shapes the reads; nothing is timed
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}/v1"


async def test_crlf_split_across_reads_loses_nothing_and_leaks_no_usage() -> None:
    want = reference(RECORDED, drop_usage=True)
    assert want.completion_tokens
    sink = ListSink()
    async with splitting_upstream() as upstream:
        gateway = build_gateway(gateway_settings(upstream), sinks=[sink])
        async with running_server(gateway) as base:
            client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=CLIENT_KEY)
            stream = await client.chat.completions.create(
                model="tara-tutor",
                messages=MESSAGES,
                stream=True,  # type: ignore[arg-type]
            )
            chunks = [chunk async for chunk in stream]
            await client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want.text
    assert all(c.usage is None for c in chunks)
    [record] = sink.records
    assert record.status == 200
    assert record.error_class is None
    assert record.answer == want.text
    assert (record.prompt_tokens, record.completion_tokens) == (
        want.prompt_tokens,
        want.completion_tokens,
    )
