"""Deciding what one request gets: an answer or an injected error, and when.

Pure: :func:`plan_request` maps a model's behaviour, a request and an RNG to
a :class:`Plan`. The RNG comes from :func:`request_rng`, seeded with a digest
of (sandbox seed, model, messages) and how many times that same request was
seen before, never from global random state, so the same sequence of
requests yields the same answers, errors and latencies run after run, and a
client's retry of an identical request gets a fresh draw.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tara.sandbox.answers import answer_tokens, compose, pick_language, pick_subject
from tara.sandbox.chat_request import ChatRequest
from tara.sandbox.config import ERROR_KINDS, ErrorKind, ModelBehaviour

ReplyKind = Literal["ok", "rate_limit", "server_error", "unavailable", "reset", "hang", "cut"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What the handler will do for one request."""

    outcome: ReplyKind
    ttft: float
    """Seconds before the first token (or before the error, for 500, reset and cut)."""
    token_delay: float
    """Seconds between further tokens."""
    tokens: list[str]
    """The answer's tokens after ``max_tokens``; concatenated they are the answer."""
    finish_reason: Literal["stop", "length"]
    cut_after: int
    """For ``cut``: how many content tokens are sent before the connection closes."""
    completion_id: str


def request_digest(seed: int, model: str, messages: list[dict[str, Any]]) -> bytes:
    """A digest identifying the request's content under this seed."""
    hasher = hashlib.blake2b(digest_size=16, key=seed.to_bytes(16, "big", signed=True))
    hasher.update(model.encode())
    hasher.update(b"\0")
    hasher.update(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS))
    return hasher.digest()


def request_rng(digest: bytes, occurrence: int) -> random.Random:
    """The RNG of the ``occurrence``-th (0-based) request with this digest."""
    return random.Random(digest + occurrence.to_bytes(8, "big"))


def _error_kind(weights: dict[ErrorKind, float], u: float) -> ErrorKind:
    total = sum(weights.get(kind, 0.0) for kind in ERROR_KINDS)
    threshold = u * total
    chosen: ErrorKind = "server_error"
    for kind in ERROR_KINDS:
        weight = weights.get(kind, 0.0)
        if weight <= 0:
            continue
        chosen = kind
        threshold -= weight
        if threshold < 0:
            break
    return chosen


def plan_request(behaviour: ModelBehaviour, request: ChatRequest, rng: random.Random) -> Plan:
    """The plan for ``request`` on a model that behaves like ``behaviour``."""
    # Draw in a fixed order so that changing one knob (say the error rate) does not
    # reshuffle the answers and latencies of the requests that still succeed.
    u_error, u_kind = rng.random(), rng.random()
    latency = behaviour.latency
    ttft_ms = latency.ttft_median_ms * math.exp(latency.ttft_sigma * rng.gauss(0.0, 1.0))
    ttft = min(ttft_ms, latency.ttft_max_ms) / 1000.0
    completion_id = f"chatcmpl-{rng.getrandbits(96):024x}"
    errors = behaviour.errors
    outcome: ReplyKind = _error_kind(errors.kinds, u_kind) if u_error < errors.rate else "ok"
    tokens: list[str] = []
    finish: Literal["stop", "length"] = "stop"
    cut_after = 0
    if outcome in ("ok", "cut"):
        language = pick_language(request.messages, behaviour.language)
        subject = pick_subject(request.messages, request.metadata)
        count = rng.randint(behaviour.min_sentences, behaviour.max_sentences)
        tokens = answer_tokens(compose(rng, language, subject, count))
        if request.max_tokens is not None and request.max_tokens < len(tokens):
            tokens = tokens[: request.max_tokens]
            finish = "length"
        cut_after = rng.randint(1, max(1, len(tokens) - 1))
    return Plan(
        outcome=outcome,
        ttft=ttft,
        token_delay=latency.token_delay_ms / 1000.0,
        tokens=tokens,
        finish_reason=finish,
        cut_after=cut_after,
        completion_id=completion_id,
    )
