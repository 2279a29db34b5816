"""Retrying an upstream attempt before the client has seen a byte.

The first attempt runs bare: most requests succeed at once and pay nothing
for the retry machinery. Only when it fails with a retryable
:class:`~tara.gateway.upstream.UpstreamError` is it tried again, after
jittered exponential backoff (or the upstream's Retry-After, capped), at
most ``retry_attempts`` attempts in all, and no attempt that would start
after ``retry_deadline``.

A plain loop rather than tenacity: its per-attempt futures held each failure
and the failure's traceback held them, ~190 objects a failed request that
only the garbage collector could free. Here each failure that is retried is
:func:`~tara.gateway.errors.settled` once it has been reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tara.gateway.errors import settled
from tara.gateway.upstream import UpstreamError
from tara.settings import UpstreamSettings

T = TypeVar("T")

OnRetry = Callable[[UpstreamError, float], None]
"""Hears each failure that will be retried, and the seconds until the next attempt."""


class RetryPolicy:
    """Runs an attempt function under the upstream settings' retry rules."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings

    def wait(self, failure: UpstreamError, failed: int) -> float:
        """Seconds before the next attempt after ``failed`` attempts, the last ``failure``.

        Retry-After when the upstream gave one (capped), else
        ``initial * 2**(failed-1)`` plus up to ``initial`` of jitter, at most
        ``retry_max_backoff``.
        """
        s = self.settings
        if failure.retry_after is not None:
            return min(failure.retry_after, s.retry_after_cap)
        initial = s.retry_initial_backoff
        return min(initial * 2.0 ** (failed - 1) + random.uniform(0, initial), s.retry_max_backoff)

    async def run(self, attempt: Callable[[], Awaitable[T]], on_retry: OnRetry) -> T:
        """Result of the first successful attempt; else the last failure, with ``attempts`` set."""
        s = self.settings
        started = time.monotonic()
        failed = 0
        while True:
            try:
                return await attempt()
            except UpstreamError as exc:
                failure = exc
            failed += 1
            failure.attempts = failed
            if not failure.retryable or failed >= s.retry_attempts:
                raise failure
            wait = self.wait(failure, failed)
            if time.monotonic() - started + wait >= s.retry_deadline:
                raise failure
            on_retry(failure, wait)
            settled(failure)
            await asyncio.sleep(wait)
