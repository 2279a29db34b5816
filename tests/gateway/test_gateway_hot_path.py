"""The cheap hot path: delayed disconnect watching, the in-flight count, ids, upstream timers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gateway_harness import AUTH, MESSAGES, UPSTREAM_KEY, ListSink, gateway_settings
from prometheus_client import CollectorRegistry

from tara.gateway.app import build_gateway
from tara.gateway.chat import DisconnectWatch, new_request_id
from tara.sandbox import running_sandbox
from tara.sandbox.config import Errors, Latency, ModelBehaviour, default_config, zero_latency
from tara.serving import running_server
from tara.telemetry.metrics import MetricsRecorder
from waiting import eventually

ZERO = Latency(ttft_median_ms=0, ttft_sigma=0, token_delay_ms=0)
HANG = ModelBehaviour(latency=ZERO, errors=Errors(rate=1.0, kinds={"hang": 1.0}))


@contextlib.asynccontextmanager
async def hanging_gateway(
    **upstream: Any,
) -> AsyncIterator[tuple[str, ListSink, CollectorRegistry]]:
    base = zero_latency(default_config())
    config = base.model_copy(
        update={"api_keys": [UPSTREAM_KEY], "models": {**base.models, "m-hang": HANG}}
    )
    async with running_sandbox(config) as up:
        settings = gateway_settings(
            up, upstream=upstream, tracks={"tara-tutor": {"stable_model": "m-hang"}}
        )
        sink, registry = ListSink(), CollectorRegistry()
        gateway = build_gateway(settings, sinks=[sink], registry=registry)
        async with running_server(gateway) as url:
            yield url, sink, registry


def test_request_ids_are_32_hex_digits_and_distinct() -> None:
    # Several read-ahead batches (1,024 ids each), so refills are covered.
    ids = {new_request_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_a_forked_child_draws_its_own_random_ids() -> None:
    new_request_id()  # the parent has bytes read ahead now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.write(write, new_request_id()[12:].encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = new_request_id()[12:]
    assert len(child) == len(parent) == 20
    assert child != parent


def test_in_flight_gauge_reads_the_plain_count() -> None:
    registry = CollectorRegistry()
    metrics = MetricsRecorder(registry)
    assert registry.get_sample_value("tara_requests_in_flight") == 0
    metrics.active.count += 3
    assert registry.get_sample_value("tara_requests_in_flight") == 3
    metrics.active.count -= 3
    assert registry.get_sample_value("tara_requests_in_flight") == 0


class _Finished:
    """Stands in for an exchange in the watch: only ``finishing`` is read."""

    finishing = False


async def test_watch_stopped_early_never_reads_receive() -> None:
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"type": "http.disconnect"}

    exchange: Any = _Finished()
    watch = DisconnectWatch(receive, exchange, asyncio.get_running_loop(), delay=0.05)
    watch.stop()
    await asyncio.sleep(0.1)
    assert calls == 0
    assert not watch.disconnected


async def test_watch_cancels_the_request_once_it_starts() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    exchange: Any = _Finished()
    watch = DisconnectWatch(receive, exchange, asyncio.get_running_loop(), delay=0.01)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(5)
    assert watch.disconnected
    task = asyncio.current_task()
    assert task is not None
    task.uncancel()
    watch.stop()


async def test_in_flight_counts_a_hanging_request_and_a_disconnect_cancels_it() -> None:
    async with hanging_gateway(first_byte_timeout=30.0) as (url, sink, registry):
        async with httpx.AsyncClient(timeout=10) as client:
            request = asyncio.create_task(
                client.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "tara-tutor", "messages": MESSAGES},
                    headers=AUTH,
                )
            )
            await eventually(
                lambda: registry.get_sample_value("tara_requests_in_flight") == 1, "in flight"
            )
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
        await eventually(lambda: sink.records, "the record")
        assert registry.get_sample_value("tara_requests_in_flight") == 0
    [record] = sink.records
    assert record.status == 499


@pytest.mark.parametrize("stream", [False, True])
async def test_first_byte_timeout_holds_for_both_kinds(stream: bool) -> None:
    body = {"model": "tara-tutor", "messages": MESSAGES, "stream": stream}
    async with (
        hanging_gateway(first_byte_timeout=0.2, retry_attempts=1) as (url, sink, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        response = await client.post(f"{url}/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    [record] = sink.records
    assert (record.status, record.error_class) == (504, "timeout")
