"""``tara-judge``: a sandbox model that grades answers the way an LLM judge would.

The evaluator (:mod:`tara.finetune.judge`) sends a rubric as the system
message and, as the last user message, a JSON object with ``question``,
``reference`` and ``answer``. A real judge reads them; this one looks the
answer up among the answers the sandbox itself produced (each remembered
with its model's ``quality``) and grades from that quality, so a better
sandbox model earns better grades without the judge being told which model
answered. An answer it never produced is graded by its word overlap with
the reference. Grades are integers 1–5 with a deterministic jitter from a
digest of the answer::

    accuracy = round(1 + 4·q + u),  cultural = round(3 + 2·q + u),  u ∈ [-0.5, 0.5)

so over many answers the mean accuracy is about ``1 + 4·q``. The reply is a
non-streamed completion whose content is ``{"accuracy", "cultural", "rationale"}``.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from typing import Any

import orjson
from aiohttp import web

from tara.sandbox.chat_request import ChatRequest
from tara.sandbox.encoding import completion
from tara.sandbox.errors import bad_request
from tara.sandbox.plan import Plan
from tara.sandbox.registry import ModelRegistry
from tara.sandbox.state import SandboxState
from tara.sandbox.tokens import count_tokens, prompt_tokens

JUDGE_MODEL = "tara-judge"
"""Answered by the judge unless a model of that name is configured."""
MEMO_SIZE = 50_000
"""Answers remembered per sandbox (oldest forgotten first): ~2 MB of digests."""

# Keyed by the state's registry: one per sandbox app, hashable, and gone with the app.
_MEMOS: weakref.WeakKeyDictionary[ModelRegistry, dict[bytes, float]] = weakref.WeakKeyDictionary()


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.strip().encode("utf-8", "surrogatepass"), digest_size=16).digest()


def remember(state: SandboxState, quality: float, plan: Plan) -> None:
    """Note that an answer the sandbox sends came from a model of ``quality``."""
    if plan.outcome != "ok":
        return
    memo = _MEMOS.get(state.registry)
    if memo is None:
        memo = _MEMOS[state.registry] = {}
    elif len(memo) >= MEMO_SIZE:
        del memo[next(iter(memo))]
    memo[_digest("".join(plan.tokens))] = quality


def _words(text: str) -> list[str]:
    return [w.strip(".,!?;:()\"'।") for w in text.casefold().split()]


def overlap(answer: str, reference: str) -> float:
    """Token F1 of the answer's words against the reference's."""
    a, r = _words(answer), _words(reference)
    if not a or not r:
        return 0.0
    counts: dict[str, int] = {}
    for w in r:
        counts[w] = counts.get(w, 0) + 1
    common = 0
    for w in a:
        if counts.get(w, 0) > 0:
            counts[w] -= 1
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def grade(case: dict[str, Any], memo: dict[bytes, float]) -> dict[str, Any]:
    """The judgement of one ``{"question", "reference", "answer"}`` case (see module doc)."""
    answer, reference = str(case.get("answer", "")), str(case.get("reference", ""))
    digest = _digest(answer)
    quality = memo.get(digest)
    source = "the answering model's quality"
    if quality is None:
        quality, source = overlap(answer, reference), "word overlap with the reference"
    u = digest[0] / 256 - 0.5
    accuracy = min(5, max(1, round(1 + 4 * quality + u)))
    cultural = min(5, max(1, round(3 + 2 * quality + u)))
    rationale = f"sandbox judge: graded from {source} ({quality:.2f})"
    return {"accuracy": accuracy, "cultural": cultural, "rationale": rationale}


def _case(chat: ChatRequest) -> dict[str, Any] | None:
    for message in reversed(chat.messages):
        if message.get("role") == "user":
            content = message.get("content")
            try:
                case = orjson.loads(content) if isinstance(content, str) else None
            except orjson.JSONDecodeError:
                return None
            return case if isinstance(case, dict) else None
    return None


def respond(state: SandboxState, chat: ChatRequest) -> web.Response:
    """Answer a judge request: a completion holding the judgement as JSON."""
    case = _case(chat)
    if case is None:
        msg = "tara-judge expects the last user message to be a JSON object with 'answer'."
        return bad_request(msg, "messages").response()
    if chat.stream:
        return bad_request("tara-judge does not stream.", "stream").response()
    text = orjson.dumps(grade(case, _MEMOS.get(state.registry, {}))).decode()
    body = completion(
        f"chatcmpl-judge-{_digest(text).hex()[:16]}",
        int(time.time()),
        chat.model,
        text,
        "stop",
        prompt_tokens(chat.messages),
        count_tokens(text),
    )
    return web.Response(body=body, content_type="application/json")
