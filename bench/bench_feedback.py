"""Benchmark of the telemetry side paths: recording, flushing, feedback joins, retries.

Needs the Redis at 127.0.0.1:6379; writes under a throw-away namespace and
deletes it afterwards. Run: ``.venv/bin/python bench/bench_feedback.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import redis.asyncio as aioredis

from tara.telemetry.interactions import Interaction
from tara.telemetry.request_index import CountedFeedback
from tara.telemetry.request_index_redis import RedisRequestIndex
from tara.telemetry.user_retries import RedisRetryMemory, UserRetryDetector
from tara.telemetry.window_recorder import WindowRecorder
from tara.telemetry.window_store_redis import RedisWindowStore

N = 20_000


def interaction(i: int, now: float) -> Interaction:
    return Interaction(
        request_id=f"req-{i}",
        created_at=now + i * 0.001,
        track="tara-tutor",
        segment=("math:hi", "physics:ta", "all")[i % 3],
        variant=("stable", "canary")[i % 2],
        model="m",
        student_hash=f"s{i % 500}",
        subject="math",
        language="hi",
        grade="8",
        status=200,
        latency_s=0.2 + (i % 50) / 100,
        ttft_s=0.05,
        prompt_tokens=40,
        completion_tokens=120,
        messages=[{"role": "user", "content": f"प्रश्न संख्या {i % 700} क्या है?"}],
    )


async def main() -> None:
    namespace = f"tara-bench-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    store = RedisWindowStore(client, namespace=namespace)
    recorder = WindowRecorder(store)
    index = RedisRequestIndex(client, namespace=namespace)
    detector = UserRetryDetector(RedisRetryMemory(client, namespace=namespace), recorder)
    now = time.time() - 30
    items = [interaction(i, now) for i in range(N)]
    try:
        t = time.perf_counter()
        for ix in items:
            recorder.record(ix)
            index.record(ix)
            detector.record(ix)
        per_request = (time.perf_counter() - t) / N * 1e6
        print(f"record() on 3 sinks: {per_request:.1f} µs per request ({N} requests)")
        print(f"  pending window buckets: {recorder.pending_keys}")

        for name, flush in (
            ("retry detector", detector.flush),
            ("window recorder", recorder.flush),
            ("request index", index.flush),
        ):
            t, cpu = time.perf_counter(), time.process_time()
            await flush()
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            print(f"flush {name}: {wall * 1e3:.1f} ms ({cpu * 1e3:.1f} ms client CPU) for {N}")

        other = RedisRequestIndex(client, namespace=namespace)
        latencies = []
        for i in range(500):
            t = time.perf_counter()
            change = await other.set_feedback(f"req-{i}", CountedFeedback(4, ("wrong",)))
            latencies.append(time.perf_counter() - t)
            assert change is not None
        q = statistics.quantiles(latencies, n=100)
        print(
            f"set_feedback at another replica: p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms"
        )

        t = time.perf_counter()
        got = await store.read_many(
            [("tara-tutor", "all", "stable"), ("tara-tutor", "all", "canary")], now - 3600, now + 60
        )
        print(f"read_many 2 series over 61 min: {(time.perf_counter() - t) * 1e3:.1f} ms")
        print(f"  requests seen: {sum(s.requests for s in got.values())}")
    finally:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
