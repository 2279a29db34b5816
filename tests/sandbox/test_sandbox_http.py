"""The sandbox over real HTTP with the real ``openai`` SDK: shapes, usage, languages, errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
import openai
import pytest
from sandbox_support import INSTANT, KEY

from tara.sandbox import default_config, running_sandbox
from tara.sandbox.app import MAX_BODY_BYTES
from tara.sandbox.config import Latency, ModelBehaviour, SandboxConfig
from tara.sandbox.tokens import count_tokens, prompt_tokens

HINDI_SYSTEM = (
    "You are Tara, a caring Indian female AI tutor. Respond in Hindi (Devanagari script)."
)
QUESTION: list[Any] = [
    {"role": "system", "content": "You are Tara, a caring Indian female AI tutor."},
    {"role": "user", "content": "What is 7 times 8?"},
]


def _script_share(text: str, low: str, high: str) -> float:
    letters = [c for c in text if c.isalpha() or "\u0900" <= c <= "\u0bff"]
    return sum(low <= c <= high for c in letters) / len(letters)


async def test_non_streaming_completion(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="tara-stable", messages=QUESTION
    )
    assert raw.headers["X-Sandbox-Quality"] == "0.75"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "tara-stable"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    text = choice.message.content or ""
    assert text.endswith((".", "!", "?"))
    assert completion.usage is not None
    assert completion.usage.completion_tokens == count_tokens(text)
    assert completion.usage.prompt_tokens == prompt_tokens(QUESTION)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + count_tokens(text)


@pytest.mark.parametrize("include_usage", [True, False])
async def test_streaming_completion(client: openai.AsyncOpenAI, include_usage: bool) -> None:
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    stream = await client.chat.completions.create(
        model="tara-stable", messages=QUESTION, stream=True, stream_options=options
    )
    pieces: list[str] = []
    finishes: list[str] = []
    usages = []
    roles = []
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            assert chunk.choices == []
            usages.append(chunk.usage)
            continue
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        if delta.content:
            pieces.append(delta.content)
        if chunk.choices[0].finish_reason:
            finishes.append(chunk.choices[0].finish_reason)
    text = "".join(pieces)
    assert roles == ["assistant"]
    assert finishes == ["stop"]
    assert len(pieces) == count_tokens(text)
    if include_usage:
        [usage] = usages
        assert usage.completion_tokens == len(pieces)
        assert usage.prompt_tokens == prompt_tokens(QUESTION)
    else:
        assert usages == []


async def test_raw_stream_is_sse_ending_in_done(sandbox_url: str) -> None:
    body = {"model": "bench-fast", "messages": QUESTION, "stream": True}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session,
        session.post(f"{sandbox_url}/chat/completions", json=body) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.text()
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-2])


@pytest.mark.parametrize("stream", [False, True])
async def test_max_tokens_stops_with_length(client: openai.AsyncOpenAI, stream: bool) -> None:
    if stream:
        chunks = await client.chat.completions.create(
            model="tara-stable",
            messages=QUESTION,
            max_completion_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, finish, completion_tokens = [], None, None
        async for chunk in chunks:
            if chunk.usage:
                completion_tokens = chunk.usage.completion_tokens
            elif chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            elif chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        assert (len(pieces), finish, completion_tokens) == (4, "length", 4)
    else:
        completion = await client.chat.completions.create(
            model="tara-stable", messages=QUESTION, max_tokens=4
        )
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 4
        assert count_tokens(completion.choices[0].message.content or "") == 4


@pytest.mark.parametrize(
    ("messages", "low", "high"),
    [
        (
            [
                {"role": "system", "content": HINDI_SYSTEM},
                {"role": "user", "content": "What is force?"},
            ],
            "\u0900",
            "\u097f",
        ),
        ([{"role": "user", "content": "बल क्या होता है? समझाइए।"}], "\u0900", "\u097f"),
        ([{"role": "user", "content": "அமிலம் என்றால் என்ன?"}], "\u0b80", "\u0bff"),
        (
            [{"role": "user", "content": "Reply in Tamil please: what is gravity?"}],
            "\u0b80",
            "\u0bff",
        ),
        ([{"role": "user", "content": "What is gravity?"}], "A", "z"),
    ],
)
async def test_answer_language_uses_the_real_script(
    client: openai.AsyncOpenAI, messages: list[Any], low: str, high: str
) -> None:
    for model in ("tara-stable", "bench-fast"):
        completion = await client.chat.completions.create(model=model, messages=messages)
        text = completion.choices[0].message.content or ""
        assert _script_share(text, low, high) > 0.9, text


async def test_forced_language_model() -> None:
    config = SandboxConfig(models={"tamil-only": ModelBehaviour(language="ta", latency=INSTANT)})
    async with running_sandbox(config) as url, openai.AsyncOpenAI(base_url=url, api_key=KEY) as sdk:
        completion = await sdk.chat.completions.create(
            model="tamil-only", messages=[{"role": "user", "content": "Respond in Hindi: बल?"}]
        )
    assert _script_share(completion.choices[0].message.content or "", "\u0b80", "\u0bff") > 0.9


async def test_paced_stream_delivers_the_same_tokens() -> None:
    paced = Latency(ttft_median_ms=1, ttft_sigma=0, token_delay_ms=1)
    config = SandboxConfig(models={"paced": ModelBehaviour(max_sentences=3, latency=paced)})
    async with running_sandbox(config) as url, openai.AsyncOpenAI(base_url=url, api_key=KEY) as sdk:
        stream = await sdk.chat.completions.create(
            model="paced", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        pieces = [
            c.choices[0].delta.content
            async for c in stream
            if c.choices and c.choices[0].delta.content
        ]
        plain = await sdk.chat.completions.create(model="paced", messages=QUESTION)
    assert len(pieces) == count_tokens("".join(pieces))
    assert plain.usage is not None
    assert plain.usage.completion_tokens == count_tokens(plain.choices[0].message.content or "")


async def test_models_list_shows_quality(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    models = {m.id: m for m in page.data}
    assert {
        "tara-stable",
        "tara-candidate-good",
        "tara-candidate-bad",
        "tara-candidate-slow",
        "bench-fast",
    } <= set(models)
    assert models["tara-stable"].object == "model"
    assert models["tara-stable"].owned_by == "tara-sandbox"
    assert (models["tara-stable"].model_extra or {})["quality"] == 0.75
    one = await client.models.retrieve("tara-candidate-good")
    assert (one.model_extra or {})["quality"] == 0.88


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="gpt-nope", messages=QUESTION)
    assert info.value.code == "model_not_found"
    assert info.value.body == {
        "message": "The model 'gpt-nope' does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "code": "model_not_found",
        "param": None,
    }
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-nope")


async def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_bad_json_and_missing_messages_are_400(sandbox_url: str) -> None:
    url = f"{sandbox_url}/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    status, body = await _post(url, b'{"model": "tara-stable", "messages": [', auth)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in body["error"]["message"]
    status, body = await _post(url, b'{"model": "tara-stable"}', auth)
    assert status == 400
    assert body["error"]["param"] == "messages"
    assert body["error"]["code"] == "missing_required_parameter"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer   ", "Basic c2stdGVzdA==", "sk-test"])
async def test_requests_without_a_bearer_key_are_401(sandbox_url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    status, body = await _post(f"{sandbox_url}/chat/completions", b"{}", headers)
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"


async def test_configured_keys_are_the_only_ones_accepted() -> None:
    config = SandboxConfig(
        api_keys=["sk-right"],
        models={"m": ModelBehaviour(latency=INSTANT)},
    )
    async with running_sandbox(config) as url:
        async with openai.AsyncOpenAI(base_url=url, api_key="sk-wrong", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
                await wrong.models.list()
        async with openai.AsyncOpenAI(base_url=url, api_key="sk-right") as right:
            completion = await right.chat.completions.create(model="m", messages=QUESTION)
    assert completion.choices[0].message.content


async def test_unknown_route_is_an_openai_404(sandbox_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sandbox_url}/chat/completions") as r,
    ):
        assert r.status == 404
        body = await r.json()
    assert body["error"]["code"] == "unknown_url"
    assert "GET /v1/chat/completions" in body["error"]["message"]


async def test_oversized_body_is_an_openai_413(sandbox_url: str) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{sandbox_url}/chat/completions",
            content=b" " * (MAX_BODY_BYTES + 1),
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


async def test_running_sandbox_defaults_to_builtin_models_without_latency() -> None:
    async with running_sandbox() as url, httpx.AsyncClient() as http:
        r = await http.get(
            f"{url.removesuffix('/v1')}/sandbox/models", headers={"Authorization": f"Bearer {KEY}"}
        )
    behaviours = r.json()
    assert set(behaviours) == set(default_config().models)
    assert all(b["latency"]["ttft_median_ms"] == 0 for b in behaviours.values())
    assert behaviours["tara-candidate-bad"]["errors"]["rate"] == 0.2
