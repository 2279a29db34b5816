"""SIGTERM with 50 streams open: every stream ends whole, every row is written, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
from chaos_support import (
    CLIENT_KEY,
    QUESTION,
    TRACK,
    Gateway,
    fast_sandbox,
    figures,
    gateway_env,
    sandbox,
    stored_rows,
)

pytestmark = pytest.mark.integration

STREAMS = 50


@pytest.mark.timeout(60)
async def test_sigterm_with_50_open_streams_drains_them_and_exits_0(tmp_path: Path) -> None:
    # Answers of a few seconds: every stream is mid-answer when SIGTERM arrives.
    async with sandbox(fast_sandbox(ttft_ms=50, token_ms=25)) as upstream:
        gw = Gateway(gateway_env(upstream, tmp_path), tmp_path)
        try:
            await gw.ready()
            started = asyncio.Event()
            first_bytes = 0
            ids: list[str] = []
            bodies: list[bytes] = []

            async def stream(n: int, client: httpx.AsyncClient) -> None:
                nonlocal first_bytes
                headers = {"Authorization": f"Bearer {CLIENT_KEY}", "X-Tara-User": f"s-{n}"}
                body = {"model": TRACK, "messages": QUESTION, "stream": True}
                async with client.stream(
                    "POST", f"{gw.base}/v1/chat/completions", json=body, headers=headers
                ) as response:
                    assert response.status_code == 200
                    ids.append(response.headers["x-tara-request-id"])
                    data = b""
                    async for chunk in response.aiter_raw():
                        if not data:
                            first_bytes += 1
                            if first_bytes == STREAMS:
                                started.set()
                        data += chunk
                    bodies.append(data)

            limits = httpx.Limits(max_connections=STREAMS + 5)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                tasks = [asyncio.create_task(stream(n, client)) for n in range(STREAMS)]
                await asyncio.wait_for(started.wait(), 30)
                sent = time.monotonic()
                gw.signal(signal.SIGTERM)
                await asyncio.gather(*tasks)
            code = await gw.wait(40)
            drained = time.monotonic() - sent
        finally:
            gw.stop_now()
    rows = {ix.request_id for ix in await stored_rows(f"sqlite:///{tmp_path / 'log.db'}")}
    assert len(bodies) == STREAMS
    assert all(b.endswith(b"data: [DONE]\n\n") for b in bodies)
    assert code == 0, gw.output()
    assert set(ids) <= rows
    figures(
        "sigterm_50_streams",
        streams=STREAMS,
        completed=sum(b.endswith(b"data: [DONE]\n\n") for b in bodies),
        exit_code=code,
        rows_missing=len(set(ids) - rows),
        signal_to_exit_s=round(drained, 2),
    )
