"""Request plans: reproducible under a seed, error mix by weight, latency, max_tokens."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from tara.sandbox.chat_request import ChatRequest
from tara.sandbox.config import Errors, Latency, ModelBehaviour
from tara.sandbox.plan import Plan, plan_request, request_digest, request_rng

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are Tara. Respond in Hindi."},
    {"role": "user", "content": "What is force?"},
]


def _plan(
    behaviour: ModelBehaviour,
    seed: int = 0,
    occurrence: int = 0,
    max_tokens: int | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> Plan:
    request = ChatRequest("m", messages or MESSAGES, False, False, max_tokens, None)
    digest = request_digest(seed, request.model, request.messages)
    return plan_request(behaviour, request, request_rng(digest, occurrence))


def test_same_seed_request_and_occurrence_give_the_same_plan() -> None:
    behaviour = ModelBehaviour(errors=Errors(rate=0.5))
    assert _plan(behaviour, seed=3, occurrence=2) == _plan(behaviour, seed=3, occurrence=2)


def test_seed_occurrence_and_content_each_change_the_draw() -> None:
    behaviour = ModelBehaviour()
    base = _plan(behaviour)
    assert _plan(behaviour, seed=1).completion_id != base.completion_id
    assert _plan(behaviour, occurrence=1).completion_id != base.completion_id
    other = [{"role": "user", "content": "What is an acid?"}]
    assert _plan(behaviour, messages=other).completion_id != base.completion_id


def test_digest_ignores_key_order_of_messages() -> None:
    a = [{"role": "user", "content": "x"}]
    b = [{"content": "x", "role": "user"}]
    assert request_digest(0, "m", a) == request_digest(0, "m", b)
    assert request_digest(0, "m", a) != request_digest(0, "n", a)


def test_error_kinds_follow_their_weights() -> None:
    behaviour = ModelBehaviour(
        errors=Errors(rate=0.5, kinds={"rate_limit": 3, "reset": 1, "hang": 0})
    )
    outcomes = Counter(_plan(behaviour, occurrence=i).outcome for i in range(4000))
    assert set(outcomes) == {"ok", "rate_limit", "reset"}
    assert outcomes["ok"] == pytest.approx(2000, rel=0.1)
    assert outcomes["rate_limit"] == pytest.approx(1500, rel=0.1)
    assert outcomes["reset"] == pytest.approx(500, rel=0.15)


def test_error_rate_does_not_reshuffle_successful_answers() -> None:
    calm = ModelBehaviour()
    stormy = ModelBehaviour(errors=Errors(rate=0.3))
    for i in range(50):
        a, b = _plan(calm, occurrence=i), _plan(stormy, occurrence=i)
        if b.outcome == "ok":
            assert (a.tokens, a.ttft) == (b.tokens, b.ttft)


def test_ttft_is_lognormal_around_the_median_and_capped() -> None:
    behaviour = ModelBehaviour(
        latency=Latency(ttft_median_ms=100, ttft_sigma=0.5, ttft_max_ms=400, token_delay_ms=7)
    )
    plans = [_plan(behaviour, occurrence=i) for i in range(2000)]
    ttfts = sorted(p.ttft for p in plans)
    assert ttfts[len(ttfts) // 2] == pytest.approx(0.1, rel=0.1)
    assert max(ttfts) == pytest.approx(0.4)
    logs = [math.log(t) for t in ttfts if t < 0.4]
    mean = sum(logs) / len(logs)
    assert mean == pytest.approx(math.log(0.1), abs=0.1)
    assert {p.token_delay for p in plans} == {0.007}


def test_answer_follows_the_instructed_language() -> None:
    plan = _plan(ModelBehaviour())
    text = "".join(plan.tokens)
    assert any("\u0900" <= c <= "\u097f" for c in text)
    assert plan.finish_reason == "stop"
    assert 1 <= plan.cut_after < len(plan.tokens)


def test_max_tokens_truncates_and_reports_length() -> None:
    full = _plan(ModelBehaviour())
    short = _plan(ModelBehaviour(), max_tokens=5)
    assert short.tokens == full.tokens[:5]
    assert short.finish_reason == "length"
    roomy = _plan(ModelBehaviour(), max_tokens=len(full.tokens))
    assert roomy.finish_reason == "stop"


def test_failed_requests_carry_no_answer() -> None:
    plan = _plan(ModelBehaviour(errors=Errors(rate=1.0, kinds={"unavailable": 1})))
    assert plan.outcome == "unavailable"
    assert plan.tokens == []
