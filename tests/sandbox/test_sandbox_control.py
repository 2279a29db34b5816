"""Runtime control routes, stats, and reproducibility under a seed."""

from __future__ import annotations

import re

import httpx
import pytest
from sandbox_support import KEY, fast_config

from tara.sandbox import ModelBehaviour, build_sandbox_app, running_sandbox, sandbox_state

QUESTIONS = [
    [{"role": "user", "content": "What is 7 times 8?"}],
    [{"role": "user", "content": "बल क्या है?"}],
    [{"role": "system", "content": "Respond in Tamil."}, {"role": "user", "content": "Acid?"}],
]
AUTH = {"Authorization": f"Bearer {KEY}"}


def _root(url: str) -> str:
    return url.removesuffix("/v1")


async def _sequence(url: str) -> list[tuple[int, str]]:
    """The same mixed sequence of requests, recording status and answer."""
    seen: list[tuple[int, str]] = []
    async with httpx.AsyncClient(headers=AUTH) as http:
        for round_ in range(4):
            for model in ("tara-stable", "tara-candidate-bad", "bench-fast"):
                for messages in QUESTIONS:
                    body = {"model": model, "messages": messages, "stream": round_ % 2 == 1}
                    try:
                        r = await http.post(f"{url}/chat/completions", json=body)
                    except httpx.TransportError as exc:  # injected reset or cut
                        seen.append((0, type(exc).__name__))
                    else:
                        seen.append((r.status_code, _answer(r)))
    return seen


def _answer(r: httpx.Response) -> str:
    # Everything but the wall-clock "created" must repeat under the same seed.
    return re.sub(r'"created":\d+', "", r.text)


async def test_same_seed_same_sequence_same_answers_and_errors() -> None:
    async with running_sandbox(fast_config(), seed=7) as a:
        first = await _sequence(a)
    async with running_sandbox(fast_config(), seed=7) as b:
        second = await _sequence(b)
    async with running_sandbox(fast_config(), seed=8) as c:
        other = await _sequence(c)
    assert first == second
    assert first != other
    statuses = {status for status, _ in first}
    assert 200 in statuses
    assert statuses - {200}, "tara-candidate-bad injected no error in 36 requests"


async def test_repeating_a_request_draws_afresh_and_reset_replays(sandbox_url: str) -> None:
    body = {"model": "tara-stable", "messages": QUESTIONS[0]}
    async with httpx.AsyncClient(headers=AUTH) as http:
        url = f"{sandbox_url}/chat/completions"
        run = [(await http.post(url, json=body)).json()["id"] for _ in range(3)]
        assert len(set(run)) == 3
        reset = await http.post(f"{_root(sandbox_url)}/sandbox/reset")
        assert reset.json() == {"reset": True}
        replay = [(await http.post(url, json=body)).json()["id"] for _ in range(3)]
        stats = (await http.get(f"{_root(sandbox_url)}/sandbox/stats")).json()
    assert replay == run
    assert stats["models"]["tara-stable"]["requests"] == 3


async def test_set_a_model_behaviour_at_runtime(sandbox_url: str) -> None:
    root = _root(sandbox_url)
    async with httpx.AsyncClient(headers=AUTH) as http:
        r = await http.post(
            f"{root}/sandbox/models/tara-stable",
            json={"quality": 0.2, "errors": {"rate": 1.0, "kinds": {"unavailable": 1}}},
        )
        assert r.status_code == 200
        assert r.json()["behaviour"]["quality"] == 0.2
        assert r.json()["behaviour"]["min_sentences"] == 3  # untouched fields kept
        chat = await http.post(
            f"{sandbox_url}/chat/completions",
            json={"model": "tara-stable", "messages": QUESTIONS[0]},
        )
        assert chat.status_code == 503
        assert chat.headers["X-Sandbox-Quality"] == "0.2"
        models = (await http.get(f"{sandbox_url}/models")).json()["data"]
        assert {m["id"]: m["quality"] for m in models}["tara-stable"] == 0.2
        behaviours = (await http.get(f"{root}/sandbox/models")).json()
        assert behaviours["tara-stable"]["errors"]["kinds"] == {"unavailable": 1.0}


async def test_register_and_delete_a_model(sandbox_url: str) -> None:
    root = _root(sandbox_url)
    async with httpx.AsyncClient(headers=AUTH) as http:
        created = await http.post(
            f"{root}/sandbox/models/ft:tara:new",
            json={"latency": {"ttft_median_ms": 0, "token_delay_ms": 0}, "language": "hi"},
        )
        assert created.status_code == 200
        chat = await http.post(
            f"{sandbox_url}/chat/completions",
            json={"model": "ft:tara:new", "messages": QUESTIONS[0]},
        )
        assert chat.status_code == 200
        model = (await http.get(f"{sandbox_url}/models/ft:tara:new")).json()
        assert model["id"] == "ft:tara:new"
        assert model["created"] > 1_700_000_000
        deleted = await http.delete(f"{root}/sandbox/models/ft:tara:new")
        assert deleted.json()["deleted"] is True
        again = await http.delete(f"{root}/sandbox/models/ft:tara:new")
        assert again.status_code == 404
        gone = await http.post(
            f"{sandbox_url}/chat/completions",
            json={"model": "ft:tara:new", "messages": QUESTIONS[0]},
        )
        assert gone.status_code == 404


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{nope", "could not parse"),
        (b"[1]", "JSON object"),
        (b'{"quality": 3}', "quality: Input should be less than or equal to 1"),
        (b'{"latency": {"ttft_median": 1}}', "latency.ttft_median: Extra inputs"),
    ],
)
async def test_invalid_behaviour_is_400_and_changes_nothing(
    sandbox_url: str, content: bytes, needle: str
) -> None:
    root = _root(sandbox_url)
    async with httpx.AsyncClient(headers=AUTH) as http:
        r = await http.post(f"{root}/sandbox/models/tara-stable", content=content)
        behaviours = (await http.get(f"{root}/sandbox/models")).json()
    assert r.status_code == 400
    assert needle in r.json()["error"]["message"]
    assert behaviours["tara-stable"]["quality"] == 0.75


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sandbox/stats"),
        ("GET", "/sandbox/models"),
        ("POST", "/sandbox/models/x"),
        ("DELETE", "/sandbox/models/x"),
        ("POST", "/sandbox/reset"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/bench-fast"),
    ],
)
async def test_control_routes_need_a_key(sandbox_url: str, method: str, path: str) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.request(method, f"{_root(sandbox_url)}{path}", json={})
    assert r.status_code == 401


async def test_rejections_are_counted(sandbox_url: str) -> None:
    async with httpx.AsyncClient() as http:
        url = f"{sandbox_url}/chat/completions"
        await http.post(url, json={})
        await http.post(url, json={}, headers=AUTH)
        await http.post(url, json={"model": "nope", "messages": QUESTIONS[0]}, headers=AUTH)
        stats = (await http.get(f"{_root(sandbox_url)}/sandbox/stats", headers=AUTH)).json()
    assert stats["rejected"] == {"bad_request": 1, "model_not_found": 1, "unauthorized": 1}


def test_in_process_registry_access() -> None:
    app = build_sandbox_app(fast_config(), seed=3)
    state = sandbox_state(app)
    state.registry.register("extra", ModelBehaviour(quality=0.1))
    assert state.seed == 3
    assert "extra" in state.registry
    assert len(state.registry) == len(fast_config().models) + 1
