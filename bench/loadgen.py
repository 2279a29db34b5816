"""A closed-loop HTTP load generator for the benchmarks (aiohttp, one process).

``run_load`` keeps ``concurrency`` requests in flight for ``duration`` seconds
(or ``count`` requests) and returns per-request latencies, time to first byte
for streams, and status counts. Traffic goes to loopback only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson


@dataclass
class LoadResult:
    """What one load run observed."""

    latencies: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float, values: list[float] | None = None) -> float:
        """The ``q`` quantile (0..1) of latencies (or of ``values``) in milliseconds."""
        data = sorted(self.latencies if values is None else values)
        if not data:
            return float("nan")
        return 1000 * data[min(len(data) - 1, int(q * len(data)))]

    def median_ms(self) -> float:
        """Median latency in milliseconds."""
        return 1000 * statistics.median(self.latencies) if self.latencies else float("nan")


QUESTIONS = 997
"""Distinct questions in the benchmarks' traffic (prime, so with 5,000 students
no student asks the same question twice within a run: no false user retries)."""


def new_students(key: str) -> Callable[[int], dict[str, str]]:
    """Headers of request ``i`` for 5,000 students nobody has seen yet, maths in Hindi.

    Each call draws new students: a question repeated from an earlier run
    would rightly count as a user retry, which costs the gateway more than a
    new question, and would make later runs look more expensive.
    """
    base = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    group = uuid.uuid4().hex[:8]

    def headers(i: int) -> dict[str, str]:
        return {
            **base,
            "X-Tara-User": f"student-{group}-{i % 5000}",
            "X-Tara-Subject": "math",
            "X-Tara-Language": "hi",
        }

    return headers


def question_bodies(model: str, stream: bool) -> list[bytes]:
    """``QUESTIONS`` distinct request bodies; request ``i`` uses ``bodies[i % QUESTIONS]``."""
    return [chat_body(model, stream, f"What is {n} times 8?") for n in range(QUESTIONS)]


def chat_body(model: str, stream: bool, text: str = "What is 7 times 8?") -> bytes:
    """A small chat request body."""
    return orjson.dumps(
        {
            "model": model,
            "stream": stream,
            "messages": [
                {"role": "system", "content": "You are Tara, a caring Indian female AI tutor."},
                {"role": "user", "content": text},
            ],
        }
    )


async def run_load(
    url: str,
    body_for: Callable[[int], bytes],
    headers_for: Callable[[int], dict[str, str]],
    *,
    concurrency: int,
    duration: float | None = None,
    count: int | None = None,
    stream: bool = False,
) -> LoadResult:
    """Drive ``url`` with POSTs; request ``i`` gets ``body_for(i)``/``headers_for(i)``."""
    result = LoadResult()
    counter = 0
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    start = time.perf_counter()
    deadline = start + duration if duration is not None else float("inf")

    def next_index() -> int | None:
        nonlocal counter
        if time.perf_counter() >= deadline or (count is not None and counter >= count):
            return None
        counter += 1
        return counter

    async def worker(session: aiohttp.ClientSession) -> None:
        while (i := next_index()) is not None:
            t0 = time.perf_counter()
            async with session.post(url, data=body_for(i), headers=headers_for(i)) as resp:
                if stream:
                    first = True
                    async for _ in resp.content.iter_any():
                        if first:
                            result.ttfb.append(time.perf_counter() - t0)
                            first = False
                else:
                    await resp.read()
                result.statuses[resp.status] += 1
            result.latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - start
    return result
