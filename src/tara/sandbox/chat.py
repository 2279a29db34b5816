"""``POST /v1/chat/completions``: carry out a request's plan on the wire.

The decisions live in :mod:`tara.sandbox.plan`; this module only sleeps,
writes and, for the injected network failures, drops the connection:
``reset`` aborts it with a TCP RST and no response, ``cut`` sends the
headers and part of the body and then closes it (FIN, body incomplete),
``hang`` holds the request until the client gives up or the sandbox stops.
429 and 503 are answered at once (as a front-line limiter would); 500,
reset and cut come after the drawn time to first token.
Hangs end at once when the app is run with ``handler_cancellation=True``
(as :mod:`tara.sandbox.server` does) and within ``HANG_POLL`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

from aiohttp import web

from tara.sandbox import judge
from tara.sandbox.chat_request import ChatRequest, parse_chat_request
from tara.sandbox.config import ModelBehaviour
from tara.sandbox.encoding import DONE, ChunkEncoder, completion
from tara.sandbox.errors import (
    ApiError,
    model_not_found,
    rate_limited,
    server_error,
    unavailable,
)
from tara.sandbox.plan import Plan, plan_request, request_digest, request_rng
from tara.sandbox.state import STATE, ModelStats, SandboxState, refuse_unauthorized
from tara.sandbox.tokens import prompt_tokens

HANG_POLL = 0.25
"""Seconds between checks whether a hanging request's client is still there."""

_RST_ON_CLOSE = struct.pack("ii", 1, 0)


def drop_connection(request: web.BaseRequest, *, reset: bool) -> None:
    """Close the client's connection: abruptly with an RST, or with a FIN after what was sent."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 turns close into an RST, which clients see as "connection reset".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_ON_CLOSE)
        transport.abort()
    else:
        transport.close()


async def _hang(request: web.BaseRequest, closing: asyncio.Event) -> None:
    while not closing.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), HANG_POLL)


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _stream(
    request: web.Request, chat: ChatRequest, plan: Plan, headers: dict[str, str], prompt: int
) -> web.StreamResponse:
    encoder = ChunkEncoder(plan.completion_id, int(time.time()), chat.model, chat.include_usage)
    response = web.StreamResponse(
        headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    cut = plan.outcome == "cut"
    tokens = plan.tokens[: plan.cut_after] if cut else plan.tokens
    ending = [] if cut else [encoder.finish(plan.finish_reason)]
    if chat.include_usage and not cut:
        ending.append(encoder.usage(prompt, len(tokens)))
    if not cut:
        ending.append(DONE)
    if plan.token_delay <= 0:
        # No pacing: one write, so a benchmark pays one syscall per response.
        await response.write(b"".join([encoder.role(), *map(encoder.content, tokens), *ending]))
    else:
        await response.write(encoder.role() + encoder.content(tokens[0]))
        for token in tokens[1:]:
            await asyncio.sleep(plan.token_delay)
            await response.write(encoder.content(token))
        if ending:
            await response.write(b"".join(ending))
    if cut:
        drop_connection(request, reset=False)
    return response


async def _complete(
    request: web.Request, chat: ChatRequest, plan: Plan, headers: dict[str, str], prompt: int
) -> web.StreamResponse:
    await _sleep(plan.token_delay * max(0, len(plan.tokens) - 1))
    body = completion(
        plan.completion_id,
        int(time.time()),
        chat.model,
        "".join(plan.tokens),
        plan.finish_reason,
        prompt,
        len(plan.tokens),
    )
    if plan.outcome != "cut":
        return web.Response(body=body, content_type="application/json", headers=headers)
    response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) * plan.cut_after // max(1, len(plan.tokens))])
    drop_connection(request, reset=False)
    return response


async def _respond(
    request: web.Request,
    state: SandboxState,
    chat: ChatRequest,
    behaviour: ModelBehaviour,
    plan: Plan,
    stats: ModelStats,
) -> web.StreamResponse:
    headers = {"X-Sandbox-Quality": f"{behaviour.quality:g}"}
    outcome = plan.outcome
    if outcome == "rate_limit":
        return rate_limited(behaviour.errors.retry_after_seconds).response(headers)
    if outcome == "unavailable":
        return unavailable().response(headers)
    if outcome == "hang":
        await _hang(request, state.closing)
        drop_connection(request, reset=True)
        return web.Response()
    await _sleep(plan.ttft)
    if outcome == "server_error":
        return server_error().response(headers)
    if outcome == "reset":
        drop_connection(request, reset=True)
        # Never written: the transport is gone, aiohttp logs a client disconnect at debug.
        return web.Response()
    prompt = prompt_tokens(chat.messages)
    if outcome == "ok":
        stats.prompt_tokens += prompt
        stats.completion_tokens += len(plan.tokens)
    if chat.stream:
        return await _stream(request, chat, plan, headers, prompt)
    return await _complete(request, chat, plan, headers, prompt)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer a chat completion: an answer in the model's style, or an injected failure."""
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    state = request.app[STATE]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        state.stats.rejected["too_large"] += 1
        msg = exc.text or "Request body too large."
        return ApiError(413, msg, code="request_too_large").response()
    chat = parse_chat_request(body)
    if isinstance(chat, ApiError):
        state.stats.rejected["bad_request"] += 1
        return chat.response()
    behaviour = state.registry.get(chat.model)
    if behaviour is None and chat.model == judge.JUDGE_MODEL:
        return judge.respond(state, chat)
    if behaviour is None:
        state.stats.rejected["model_not_found"] += 1
        return model_not_found(chat.model).response()
    digest = request_digest(state.seed, chat.model, chat.messages)
    plan = plan_request(behaviour, chat, request_rng(digest, state.occurrences.next(digest)))
    judge.remember(state, behaviour.quality, plan)
    stats = state.stats.model(chat.model)
    stats.requests += 1
    stats.outcomes[plan.outcome] += 1
    state.stats.active += 1
    try:
        return await _respond(request, state, chat, behaviour, plan, stats)
    finally:
        state.stats.active -= 1
