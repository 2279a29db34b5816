"""Retrying an upstream attempt before the client has seen a byte (tenacity).

The first attempt runs bare: most requests succeed at once and pay nothing
for the retry machinery. Only when it fails with a retryable
:class:`~tara.gateway.upstream.UpstreamError` does tenacity take over,
starting from that failure, with jittered exponential backoff (or the
upstream's Retry-After, capped), at most ``retry_attempts`` attempts in all,
and no attempt that would start after ``retry_deadline``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from tara.gateway.upstream import UpstreamError
from tara.settings import UpstreamSettings

T = TypeVar("T")

OnRetry = Callable[[UpstreamError, float], None]
"""Hears each failure that will be retried, and the seconds until the next attempt."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.retryable


class _Wait:
    """Retry-After when the upstream gave one (capped), else jittered exponential backoff."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self.cap = settings.retry_after_cap
        self.backoff = wait_exponential_jitter(
            multiplier=settings.retry_initial_backoff,
            max=settings.retry_max_backoff,
            jitter=settings.retry_initial_backoff,
        )

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, UpstreamError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return float(self.backoff(state))


class RetryPolicy:
    """Runs an attempt function under the upstream settings' retry rules."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings
        self._wait = _Wait(settings)

    async def run(self, attempt: Callable[[], Awaitable[T]], on_retry: OnRetry) -> T:
        """Result of the first successful attempt; else the last failure, with ``attempts`` set."""
        started = time.monotonic()
        try:
            return await attempt()
        except UpstreamError as exc:
            if not exc.retryable or self.settings.retry_attempts <= 1:
                raise
            first: UpstreamError | None = exc
        count = 1

        async def again() -> T:
            nonlocal first, count
            if first is not None:
                # Replay the failure already seen, so tenacity's first wait follows it.
                failure, first = first, None
                raise failure
            count += 1
            try:
                return await attempt()
            except UpstreamError as failure:
                failure.attempts = count
                raise

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, UpstreamError):
                on_retry(exc, state.upcoming_sleep)

        remaining = self.settings.retry_deadline - (time.monotonic() - started)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.retry_attempts) | stop_before_delay(remaining),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(again)
