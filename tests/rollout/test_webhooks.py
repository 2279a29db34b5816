"""Webhook delivery to a real local HTTP server: JSON bodies, retries, giving up, not blocking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tara.rollout.config import RolloutSettings
from tara.rollout.webhooks import WebhookNotifier
from tara.sandbox.server import serving
from waiting import eventually


class Receiver:
    """A webhook endpoint that answers with the next scripted status (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[Any] = []
        self.attempts = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        await self.gate.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            assert request.headers["Content-Type"] == "application/json"
            self.bodies.append(orjson.loads(await request.read()))
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver([])
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with serving(app) as port:
        yield hook, f"http://127.0.0.1:{port}/hook"


def notifier(url: str, attempts: int = 4) -> WebhookNotifier:
    return WebhookNotifier([url], timeout=2.0, attempts=attempts, backoff=0.01)


async def test_an_event_is_posted_as_json(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    n = notifier(url)
    n.notify({"event": "started", "rollout_id": "ro-1", "canary_weight": 0.1})
    await n.drain()
    assert hook.bodies == [{"event": "started", "rollout_id": "ro-1", "canary_weight": 0.1}]
    assert (n.delivered, n.failed) == (1, 0)
    await n.aclose()


async def test_a_500_is_retried_until_it_is_accepted(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.statuses = [500, 503]
    n = notifier(url)
    n.notify({"event": "rolled_back"})
    await n.drain()
    assert hook.attempts == 3
    assert hook.bodies == [{"event": "rolled_back"}]
    assert (n.delivered, n.failed) == (1, 0)
    await n.aclose()


async def test_delivery_gives_up_after_the_last_attempt(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.statuses = [500] * 10
    n = notifier(url, attempts=3)
    n.notify({"event": "paused"})
    await n.drain()
    assert hook.attempts == 3
    assert (n.delivered, n.failed) == (0, 1)
    await n.aclose()


async def test_an_unreachable_receiver_is_retried_then_dropped() -> None:
    from tara.serving import free_port

    n = notifier(f"http://127.0.0.1:{free_port()}/hook", attempts=2)
    n.notify({"event": "paused"})
    await n.drain()
    assert (n.delivered, n.failed) == (0, 1)
    await n.aclose()


async def test_notify_never_waits_and_close_cancels_what_is_late(
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    hook.gate.clear()  # the receiver hangs
    n = notifier(url)
    n.notify({"event": "succeeded"})  # returns at once, though nothing was delivered
    assert n.pending == 1
    await eventually(lambda: hook.attempts == 1, "the receiver got the (hanging) delivery")
    await n.aclose(timeout=0.05)
    assert n.pending == 0
    assert n.delivered == 0
    hook.gate.set()


async def test_every_url_gets_every_event(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    settings = RolloutSettings(webhooks=[url, url], webhook_backoff=0.01)
    n = WebhookNotifier.from_settings(settings)
    n.notify({"event": "promoted"})
    await n.drain()
    assert hook.bodies == [{"event": "promoted"}, {"event": "promoted"}]
    await n.aclose()


async def test_without_urls_nothing_happens() -> None:
    n = WebhookNotifier([])
    n.notify({"event": "started"})
    assert n.pending == 0
    await n.aclose()
