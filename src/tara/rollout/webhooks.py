"""Webhook notifications: a JSON POST to each configured URL when a rollout changes.

The controller calls :meth:`WebhookNotifier.notify` from its tick; delivery
happens in background tasks, so a slow or dead receiver never delays a
rollback. Each delivery is retried with exponential backoff and jitter
(tenacity) on connection errors, timeouts and non-2xx answers, up to
``rollout.webhook_attempts`` tries, then dropped and logged. On shutdown,
:meth:`WebhookNotifier.aclose` waits for pending deliveries up to a timeout
and cancels the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from tara.rollout.config import RolloutSettings

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
MAX_PENDING = 1000
"""Deliveries in flight at most; beyond that new ones are dropped (and counted)."""


class EventSink(Protocol):
    """Where the controller sends rollout events (fire and forget)."""

    def notify(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` (JSON-ready) for delivery; never blocks, never raises."""
        ...

    async def aclose(self, timeout: float) -> None:  # noqa: ASYNC109 - a drain deadline
        """Wait up to ``timeout`` seconds for pending deliveries, then cancel them."""
        ...


class DeliveryError(Exception):
    """A webhook receiver answered with a status other than 2xx."""


class WebhookNotifier:
    """An :class:`EventSink` that POSTs each event to every URL, retrying in the background."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 5.0,
        attempts: int = 5,
        backoff: float = 1.0,
    ) -> None:
        self.urls = tuple(urls)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = attempts
        self._backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        """Deliveries a receiver accepted (2xx)."""
        self.failed = 0
        """Deliveries given up after every attempt."""
        self.dropped = 0
        """Events not even attempted because too many deliveries were pending."""

    @classmethod
    def from_settings(cls, settings: RolloutSettings) -> WebhookNotifier:
        """The notifier ``rollout.webhooks`` and its timeout/retry fields describe."""
        return cls(
            settings.webhooks,
            timeout=settings.webhook_timeout,
            attempts=settings.webhook_attempts,
            backoff=settings.webhook_backoff,
        )

    @property
    def pending(self) -> int:
        """Deliveries not finished yet."""
        return len(self._tasks)

    def notify(self, event: Mapping[str, Any]) -> None:
        """Start one background delivery per URL."""
        if not self.urls:
            return
        body = orjson.dumps(event, default=str)
        for url in self.urls:
            if len(self._tasks) >= MAX_PENDING:
                self.dropped += 1
                log.warning("webhook %s: too many pending deliveries, event dropped", url)
                continue
            task = asyncio.create_task(self._deliver(url, body), name=f"webhook {url}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every pending delivery has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a drain deadline
        """Let pending deliveries finish for up to ``timeout`` seconds, cancel the rest."""
        if self._tasks:
            _done, late = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning("webhooks: %d deliveries cancelled at shutdown", len(late))
                await asyncio.gather(*late, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _deliver(self, url: str, body: bytes) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(
                multiplier=self._backoff, jitter=self._backoff, max=MAX_BACKOFF
            ),
            retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError, DeliveryError)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._post(url, body)
        except (aiohttp.ClientError, TimeoutError, DeliveryError) as exc:
            self.failed += 1
            log.error("webhook %s: giving up after %d attempts: %s", url, self._attempts, exc)
        else:
            self.delivered += 1

    async def _post(self, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "tara-controller"}
        async with self._client().post(url, data=body, headers=headers) as response:
            if not 200 <= response.status < 300:
                msg = f"{url} answered {response.status}"
                raise DeliveryError(msg)
