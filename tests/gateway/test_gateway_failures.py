"""Upstream failures through real servers: retries, fallback, mid-stream breaks, disconnects."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import (
    AUTH,
    CLIENT_KEY,
    MESSAGES,
    UPSTREAM_KEY,
    ListSink,
    canary_table,
    gateway_settings,
)

from tara.gateway.app import Gateway, build_gateway
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.sandbox import running_sandbox
from tara.sandbox.config import (
    ErrorKind,
    Errors,
    Latency,
    ModelBehaviour,
    SandboxConfig,
    default_config,
    zero_latency,
)
from tara.sandbox.plan import request_digest, request_rng
from tara.serving import running_server
from tara.telemetry.interactions import Interaction
from waiting import eventually

pytestmark = pytest.mark.integration

SEED = 11
ZERO = Latency(ttft_median_ms=0, ttft_sigma=0, token_delay_ms=0)
SLOW = Latency(ttft_median_ms=0, ttft_sigma=0, token_delay_ms=40)


def failing(kind: ErrorKind, rate: float = 1.0, **kw: Any) -> ModelBehaviour:
    errors = Errors(rate=rate, kinds={kind: 1.0}, retry_after_seconds=1)
    return ModelBehaviour(latency=ZERO, errors=errors, **kw)


MODELS = {
    "m-rate_limit": failing("rate_limit"),
    "m-server_error": failing("server_error"),
    "m-unavailable": failing("unavailable"),
    "m-reset": failing("reset"),
    "m-hang": failing("hang"),
    "m-cut": failing("cut", min_sentences=6, max_sentences=6),
    "m-flaky": failing("server_error", rate=0.5),
    "m-slow": ModelBehaviour(latency=SLOW, min_sentences=30, max_sentences=30),
}


def sandbox_config() -> SandboxConfig:
    base = zero_latency(default_config())
    return base.model_copy(update={"api_keys": [UPSTREAM_KEY], "models": {**base.models, **MODELS}})


@dataclass
class Stack:
    gateway: Gateway
    base_url: str
    upstream: str
    sink: ListSink

    async def stats(self, model: str | None = None) -> Any:
        async with httpx.AsyncClient() as client:
            response = await client.get(
                self.upstream.removesuffix("/v1") + "/sandbox/stats",
                headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
            )
        data = response.json()
        return data if model is None else data["models"].get(model, {"requests": 0})

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(self.base_url.removesuffix("/v1") + "/metrics")).text


@contextlib.asynccontextmanager
async def stack(
    stable: str = "tara-stable", canary: str | None = None, **upstream: Any
) -> AsyncIterator[Stack]:
    async with running_sandbox(sandbox_config(), seed=SEED) as up:
        store = MemoryRoutingStore()
        if canary is not None:
            await store.save_table(canary_table(canary, 10_000, stable=stable), 0)
        settings = gateway_settings(
            up, upstream=upstream, tracks={"tara-tutor": {"stable_model": stable}}
        )
        sink = ListSink()
        gateway = build_gateway(settings, routing_store=store, sinks=[sink])
        async with running_server(gateway) as base:
            yield Stack(gateway, f"{base}/v1", up, sink)


async def post(
    s: Stack, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{s.base_url}/chat/completions", json=body, headers={**AUTH, **(headers or {})}
        )


@pytest.mark.parametrize(
    ("kind", "status", "error_class"),
    [
        ("rate_limit", 503, "rate_limited"),
        ("server_error", 502, "upstream"),
        ("unavailable", 503, "upstream"),
        ("reset", 502, "connection"),
        ("hang", 504, "timeout"),
        ("cut", 502, "connection"),
    ],
)
async def test_retried_then_given_up(kind: str, status: int, error_class: str) -> None:
    model = f"m-{kind}"
    async with stack(model, first_byte_timeout=0.3, retry_attempts=3) as s:
        response = await post(s, {"model": "tara-tutor", "messages": MESSAGES})
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert "3 attempts" in error["message"]
        assert UPSTREAM_KEY not in response.text
        assert s.upstream not in response.text
        assert (await s.stats(model))["requests"] == 3
        metrics = await s.metrics()
        [record] = s.sink.records
    labels = f'reason="{error_class}",track="tara-tutor",variant="stable"'
    assert f"tara_upstream_retries_total{{{labels}}} 2.0" in metrics
    assert (record.status, record.error_class, record.model) == (status, error_class, model)


async def test_a_retry_that_succeeds_is_invisible_to_the_client() -> None:
    # Find a question the flaky model fails the first time and answers the second time.
    for i in range(1000):
        messages = [{"role": "user", "content": f"question {i}"}]
        digest = request_digest(SEED, "m-flaky", messages)
        if request_rng(digest, 0).random() < 0.5 <= request_rng(digest, 1).random():
            break
    async with stack("m-flaky") as s:
        response = await post(s, {"model": "tara-tutor", "messages": messages})
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"]
        assert (await s.stats("m-flaky"))["outcomes"] == {"ok": 1, "server_error": 1}
        assert 'reason="upstream",track="tara-tutor",variant="stable"} 1.0' in await s.metrics()
    assert s.sink.records[0].status == 200


def by_id(records: list[Interaction]) -> dict[str, Interaction]:
    return {r.request_id: r for r in records}


async def test_failing_canary_falls_back_to_stable_with_two_records() -> None:
    async with stack(canary="m-server_error") as s:
        body = {"model": "tara-tutor", "messages": MESSAGES, "user": "s-1"}
        response = await post(s, body)
        assert response.status_code == 200
        assert response.headers["x-tara-variant"] == "stable"
        assert response.headers["x-tara-model"] == "tara-stable"
        metrics = await s.metrics()
    request_id = response.headers["x-tara-request-id"]
    records = by_id(s.sink.records)
    canary, served = records[f"{request_id}-canary"], records[request_id]
    assert (canary.variant, canary.model, canary.status, canary.error_class) == (
        "canary",
        "m-server_error",
        502,
        "upstream",
    )
    assert not canary.fallback
    assert (served.variant, served.status, served.error_class, served.fallback) == (
        "stable",
        200,
        None,
        True,
    )
    assert served.answer == response.json()["choices"][0]["message"]["content"]
    assert canary.student_hash == served.student_hash
    assert 'tara_fallbacks_total{reason="upstream",track="tara-tutor"} 1.0' in metrics
    assert 'status="502",subject="none",track="tara-tutor",variant="canary"} 1.0' in metrics


async def test_fallback_can_be_turned_off() -> None:
    async with stack(canary="m-unavailable", fallback_to_stable=False) as s:
        response = await post(s, {"model": "tara-tutor", "messages": MESSAGES, "user": "s-1"})
    assert response.status_code == 503
    assert response.headers["x-tara-variant"] == "canary"
    [record] = s.sink.records
    assert (record.variant, record.fallback) == ("canary", False)


async def read_into(stream: Any, received: list[str]) -> None:
    async for chunk in stream:
        if chunk.choices:
            received.append(chunk.choices[0].delta.content or "")


async def test_mid_stream_break_ends_with_an_error_event_and_no_retry() -> None:
    async with stack("m-cut") as s:
        async with openai.AsyncOpenAI(
            base_url=s.base_url, api_key=CLIENT_KEY, max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="tara-tutor",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
            )
            received: list[str] = []
            with pytest.raises(openai.APIError) as info:
                await read_into(stream, received)
        assert "interrupted" in str(info.value)
        assert (await s.stats("m-cut"))["requests"] == 1
    [record] = s.sink.records
    assert (record.status, record.error_class) == (200, "connection")
    assert record.answer == "".join(received)


async def test_client_giving_up_cancels_a_hanging_upstream() -> None:
    async with stack("m-hang", first_byte_timeout=30.0) as s:
        async with httpx.AsyncClient(timeout=0.3) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    f"{s.base_url}/chat/completions",
                    json={"model": "tara-tutor", "messages": MESSAGES},
                    headers=AUTH,
                )
        await eventually(lambda: s.sink.records, "the request record")
        await eventually(lambda: _inactive(s), "the sandbox to see the upstream request go away")
        assert (await s.stats("m-hang"))["requests"] == 1
    [record] = s.sink.records
    assert record.status == 499
    assert record.error_class is None


async def _inactive(s: Stack) -> bool:
    return (await s.stats())["active"] == 0


async def test_client_closing_a_stream_cancels_the_upstream() -> None:
    async with stack("m-slow") as s:
        async with httpx.AsyncClient(timeout=10) as client:
            body = {"model": "tara-tutor", "messages": MESSAGES, "stream": True}
            async with client.stream(
                "POST", f"{s.base_url}/chat/completions", json=body, headers=AUTH
            ) as response:
                assert response.status_code == 200
                async for _ in response.aiter_raw():
                    break
        await eventually(lambda: s.sink.records, "the request record")
        await eventually(lambda: _inactive(s), "the sandbox to see the stream go away")
    [record] = s.sink.records
    assert record.status == 499
    assert record.stream


async def test_idle_upstream_mid_stream_is_a_timeout() -> None:
    async with stack("m-slow", idle_timeout=0.01) as s:
        body = {"model": "tara-tutor", "messages": MESSAGES, "stream": True}
        response = await post(s, body)
        assert response.status_code == 200
        last = response.text.strip().rsplit("\n\n", 1)[-1]
        assert last.startswith("data: ")
        assert json.loads(last.removeprefix("data: "))["error"]["code"] == (
            "upstream_stream_interrupted"
        )
        await eventually(lambda: _inactive(s), "the sandbox to see the stream go away")
    [record] = s.sink.records
    assert (record.status, record.error_class) == (200, "timeout")


async def test_a_gateway_bug_is_a_500_with_an_openai_body(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(body: bytes) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("tara.gateway.exchange.parse_completion", broken)
    async with stack() as s:
        response = await post(s, {"model": "tara-tutor", "messages": MESSAGES})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    [record] = s.sink.records
    assert (record.status, record.error_class) == (500, "gateway")
