"""Injected failures, each seen through a real HTTP client as the distinct thing it is."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import openai
import pytest
from sandbox_support import KEY, fast_config

from tara.sandbox import Errors, Latency, ModelBehaviour, SandboxConfig, running_sandbox

QUESTION: Any = [{"role": "user", "content": "What is 7 times 8?"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


def _body(kind: str, stream: bool) -> dict[str, Any]:
    return {"model": f"fail-{kind}", "messages": QUESTION, "stream": stream}


async def _stats(sandbox_url: str) -> dict[str, Any]:
    root = sandbox_url.removesuffix("/v1")
    async with aiohttp.ClientSession(headers=AUTH) as s, s.get(f"{root}/sandbox/stats") as r:
        stats: dict[str, Any] = await r.json()
    return stats


async def _wait_for_active(url: str, done: Callable[[int], bool]) -> dict[str, Any]:
    """Poll the stats (at most ~4 s) until ``done(active)``; returns the last stats."""
    for _ in range(200):
        stats = await _stats(url)
        if done(stats["active"]):
            return stats
        await asyncio.sleep(0.02)
    return stats


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        ("rate_limit", 429, "requests"),
        ("server_error", 500, "server_error"),
        ("unavailable", 503, "server_error"),
    ],
)
async def test_error_statuses(
    sandbox_url: str, kind: str, status: int, error_type: str, stream: bool
) -> None:
    async with (
        httpx.AsyncClient(headers=AUTH) as http,
        http.stream("POST", f"{sandbox_url}/chat/completions", json=_body(kind, stream)) as r,
    ):
        await r.aread()
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["type"] == error_type
    assert set(r.json()["error"]) == {"message", "type", "code", "param"}
    if kind == "rate_limit":
        assert r.headers["Retry-After"] == "7"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
    else:
        assert "Retry-After" not in r.headers


async def test_sdk_sees_rate_limit_and_server_errors(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="fail-rate_limit", messages=QUESTION)
    assert info.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError) as server:
        await client.chat.completions.create(model="fail-unavailable", messages=QUESTION)
    assert server.value.status_code == 503


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_aborts_the_connection_without_a_response(
    sandbox_url: str, stream: bool
) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        with pytest.raises(aiohttp.ClientOSError) as info:
            async with session.post(
                f"{sandbox_url}/chat/completions", json=_body("reset", stream)
            ) as r:
                await r.read()
    assert info.value.errno == errno.ECONNRESET
    with pytest.raises(httpx.ReadError):
        async with httpx.AsyncClient(headers=AUTH) as http:
            await http.post(f"{sandbox_url}/chat/completions", json=_body("reset", stream))


async def _read_stream(url: str, body: dict[str, Any], lines: list[bytes]) -> None:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(f"{url}/chat/completions", json=body) as r,
    ):
        assert r.status == 200
        async for line in r.content:
            if line.strip():
                lines.append(line.strip())


async def test_streamed_cut_sends_some_chunks_then_closes(sandbox_url: str) -> None:
    lines: list[bytes] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        await _read_stream(sandbox_url, _body("cut", True), lines)
    assert len(lines) >= 2  # the role chunk and at least one token
    assert all(line.startswith(b"data: {") for line in lines)
    assert b'"finish_reason":"' not in b"".join(lines)


async def test_paced_stream_is_cut_too() -> None:
    paced = Latency(ttft_median_ms=1, ttft_sigma=0, token_delay_ms=1)
    errors = Errors(rate=1.0, kinds={"cut": 1.0})
    config = SandboxConfig(models={"m": ModelBehaviour(latency=paced, errors=errors)})
    lines: list[bytes] = []
    async with running_sandbox(config) as url:
        with pytest.raises(aiohttp.ClientPayloadError):
            await _read_stream(url, {"model": "m", "messages": QUESTION, "stream": True}, lines)
    assert len(lines) >= 2
    assert b"[DONE]" not in b"".join(lines)


async def test_non_streamed_cut_sends_part_of_the_body(sandbox_url: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
        async with httpx.AsyncClient(headers=AUTH) as http:
            await http.post(f"{sandbox_url}/chat/completions", json=_body("cut", False))


async def test_sdk_stream_sees_the_cut(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="fail-cut", messages=QUESTION, stream=True)
    received: list[Any] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIError):
        await consume()
    assert received


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_lasts_until_the_client_gives_up(sandbox_url: str, stream: bool) -> None:
    timeout = aiohttp.ClientTimeout(total=0.3)
    async with aiohttp.ClientSession(headers=AUTH, timeout=timeout) as session:
        with pytest.raises(TimeoutError):
            async with session.post(
                f"{sandbox_url}/chat/completions", json=_body("hang", stream)
            ) as r:
                await r.read()
    # The client left, so the sandbox lets go of the request.
    stats = await _wait_for_active(sandbox_url, lambda active: active == 0)
    assert stats["active"] == 0
    assert stats["models"]["fail-hang"]["outcomes"] == {"hang": 1}


async def test_hang_ends_when_the_sandbox_stops() -> None:
    async with running_sandbox(fast_config()) as url:
        session = aiohttp.ClientSession(headers=AUTH)
        request = asyncio.create_task(
            session.post(f"{url}/chat/completions", json=_body("hang", False))
        )
        await _wait_for_active(url, lambda active: active == 1)
    with pytest.raises(aiohttp.ClientError):
        await request
    await session.close()


async def test_stats_count_injected_errors(sandbox_url: str) -> None:
    async with httpx.AsyncClient(headers=AUTH) as http:
        for kind in ("rate_limit", "server_error", "unavailable"):
            await http.post(f"{sandbox_url}/chat/completions", json=_body(kind, False))
        await http.post(
            f"{sandbox_url}/chat/completions", json={"model": "bench-fast", "messages": QUESTION}
        )
    stats = (await _stats(sandbox_url))["models"]
    assert stats["fail-rate_limit"]["errors_injected"] == 1
    assert stats["fail-unavailable"]["outcomes"] == {"unavailable": 1}
    assert stats["bench-fast"]["outcomes"] == {"ok": 1}
    assert stats["bench-fast"]["errors_injected"] == 0
    assert stats["bench-fast"]["completion_tokens"] > 0
