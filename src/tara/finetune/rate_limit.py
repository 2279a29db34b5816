"""Holding the evaluator's request rate: a concurrency cap and a token bucket.

The bucket is a pure reservation ledger over an injected clock: each
request takes a token and is told how long to wait for it, so a burst
queues up in order instead of all polling. :class:`Limiter` combines it
with a semaphore for ``async with limiter.slot():``. Retries inside the
``openai`` SDK happen within the slot they started in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; tokens may be reserved ahead."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._at = clock()

    def reserve(self) -> float:
        """Take one token; the seconds to wait before using it (0 if one was there)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class Limiter:
    """At most ``concurrency`` requests at once, started at most ``rate`` per second."""

    def __init__(self, concurrency: int, rate: float, burst: int) -> None:
        self._semaphore = asyncio.Semaphore(concurrency)
        self._bucket = TokenBucket(rate, burst)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the concurrent slots, started no sooner than the rate allows."""
        async with self._semaphore:
            wait = self._bucket.reserve()
            if wait > 0:
                await asyncio.sleep(wait)
            yield
