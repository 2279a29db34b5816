"""End to end: the openai SDK -> a real gateway server -> a real sandbox server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
    in_process,
)

from tara.gateway.app import Gateway, build_gateway
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.sandbox import running_sandbox
from tara.sandbox.config import SandboxConfig, default_config, zero_latency
from tara.serving import running_server
from tara.settings import Settings

pytestmark = pytest.mark.integration


def sandbox_config() -> SandboxConfig:
    """The built-in models at zero latency; only the gateway's upstream key is accepted."""
    return zero_latency(default_config()).model_copy(update={"api_keys": [UPSTREAM_KEY]})


@dataclass
class Stack:
    gateway: Gateway
    base_url: str
    sink: ListSink
    upstream: str


@contextlib.asynccontextmanager
async def stack(
    settings_for: type[Settings] | None = None, **overrides: object
) -> AsyncIterator[Stack]:
    del settings_for
    async with running_sandbox(sandbox_config(), seed=7) as upstream:
        sink = ListSink()
        store = MemoryRoutingStore()
        gateway = build_gateway(
            gateway_settings(upstream, **overrides), routing_store=store, sinks=[sink]
        )
        async with running_server(gateway) as base:
            yield Stack(gateway, f"{base}/v1", sink, upstream)


async def test_openai_sdk_non_streaming(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with stack() as s:
        client = openai.AsyncOpenAI(base_url=s.base_url, api_key=CLIENT_KEY, max_retries=0)
        raw = await client.chat.completions.with_raw_response.create(
            model="tara-tutor",
            messages=MESSAGES,  # type: ignore[arg-type]
            user="student-raw-9",
            metadata={"subject": "math", "language": "en", "grade": "7"},
            extra_headers={"X-Tara-Retry": "1"},
        )
        completion = raw.parse()
        await client.close()
    assert raw.headers["x-tara-variant"] == "stable"
    assert raw.headers["x-tara-model"] == "tara-stable"
    assert completion.model == "tara-stable"
    answer = completion.choices[0].message.content
    assert answer
    [record] = s.sink.records
    assert record.request_id == raw.headers["x-tara-request-id"]
    assert (record.status, record.error_class, record.stream) == (200, None, False)
    assert (record.subject, record.language, record.grade) == ("math", "en", "7")
    assert record.user_retry
    assert record.answer == answer
    assert completion.usage is not None
    assert record.prompt_tokens == completion.usage.prompt_tokens
    assert record.completion_tokens == completion.usage.completion_tokens
    assert record.latency_s is not None
    assert record.ttft_s is None
    assert UPSTREAM_KEY not in caplog.text
    assert "student-raw-9" not in caplog.text


async def test_openai_sdk_streaming_drops_usage_unless_asked() -> None:
    async with stack() as s:
        client = openai.AsyncOpenAI(base_url=s.base_url, api_key=CLIENT_KEY, max_retries=0)
        stream = await client.chat.completions.create(
            model="tara-tutor",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            extra_headers={"X-Tara-User": "s-1"},
        )
        chunks = [chunk async for chunk in stream]
        with_usage = await client.chat.completions.create(
            model="tara-tutor",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        usage_chunks = [chunk async for chunk in with_usage]
        await client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.choices for c in chunks), "the usage-only chunk reached a client that did not ask"
    assert usage_chunks[-1].choices == []
    assert usage_chunks[-1].usage is not None
    first, second = s.sink.records
    assert first.answer == text
    assert first.stream
    assert first.ttft_s is not None
    assert first.latency_s is not None
    assert first.ttft_s <= first.latency_s
    assert first.completion_tokens is not None
    assert first.completion_tokens > 0
    assert second.completion_tokens == usage_chunks[-1].usage.completion_tokens


async def test_sync_openai_sdk() -> None:
    async with stack() as s:

        def call() -> tuple[str | None, list[str]]:
            with openai.OpenAI(base_url=s.base_url, api_key=CLIENT_KEY, max_retries=0) as client:
                done = client.chat.completions.create(model="tara-tutor", messages=MESSAGES)  # type: ignore[arg-type]
                stream = client.chat.completions.create(
                    model="tara-tutor",
                    messages=MESSAGES,  # type: ignore[arg-type]
                    stream=True,
                )
                parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
                return done.choices[0].message.content, parts

        answer, parts = await asyncio.to_thread(call)
    assert answer
    assert "".join(parts)
    assert [r.status for r in s.sink.records] == [200, 200]


async def test_sdk_sees_openai_errors() -> None:
    async with stack() as s:
        async with openai.AsyncOpenAI(base_url=s.base_url, api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model="tara-tutor", messages=MESSAGES)  # type: ignore[arg-type]
        async with openai.AsyncOpenAI(
            base_url=s.base_url, api_key=CLIENT_KEY, max_retries=0
        ) as client:
            with pytest.raises(openai.NotFoundError) as info:
                await client.chat.completions.create(model="gpt-nope", messages=MESSAGES)  # type: ignore[arg-type]
            assert "gpt-nope" in str(info.value)
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(model="tara-tutor", messages=[])


async def test_sticky_routing_and_canary_share() -> None:
    async with running_sandbox(sandbox_config(), seed=7) as upstream:
        store = MemoryRoutingStore()
        await store.save_table(canary_table("tara-candidate-good", 2_500), 0)
        async with in_process(gateway_settings(upstream), store=store) as (_gw, client):

            async def variant(student: str) -> str:
                body = {"model": "tara-tutor", "messages": MESSAGES, "user": student}
                response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
                assert response.status_code == 200
                model = (
                    "tara-candidate-good"
                    if response.headers["x-tara-variant"] == "canary"
                    else "tara-stable"
                )
                assert response.json()["model"] == model
                return response.headers["x-tara-variant"]

            students = [f"student-{i}" for i in range(400)]
            first = [await variant(s) for s in students]
            again = [await variant(s) for s in students[:50]]
            anonymous = [
                (
                    await client.post(
                        "/v1/chat/completions",
                        json={"model": "tara-tutor", "messages": MESSAGES},
                        headers=AUTH,
                    )
                ).headers["x-tara-variant"]
                for _ in range(20)
            ]
    assert again == first[:50]
    share = first.count("canary") / len(first)
    assert 0.18 <= share <= 0.32, share
    assert set(anonymous) == {"stable"}


async def test_segment_canary_only_sees_its_segment() -> None:
    async with running_sandbox(sandbox_config(), seed=7) as upstream:
        store = MemoryRoutingStore()
        table = canary_table("tara-candidate-good", 10_000, subject="math", language="hi")
        await store.save_table(table, 0)
        sink = ListSink()
        async with in_process(gateway_settings(upstream), store=store, sinks=[sink]) as (
            _gw,
            client,
        ):
            cases = [
                ("math", "hi"),
                ("math", "ta"),
                ("physics", "hi"),
                (None, None),
                ("MATH", "HI"),
            ]
            seen = []
            for subject, language in cases:
                headers = {**AUTH, "X-Tara-User": "s-42"}
                if subject:
                    headers |= {"X-Tara-Subject": subject, "X-Tara-Language": language or ""}
                body = {"model": "tara-tutor", "messages": MESSAGES}
                response = await client.post("/v1/chat/completions", json=body, headers=headers)
                seen.append(response.headers["x-tara-variant"])
    assert seen == ["canary", "stable", "stable", "stable", "canary"]
    assert [r.segment for r in sink.records] == ["math:hi", "all", "all", "all", "math:hi"]


async def sandbox_stats(upstream: str) -> dict[str, object]:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            upstream.removesuffix("/v1") + "/sandbox/stats",
            headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
        )
        return response.json()  # type: ignore[no-any-return]
