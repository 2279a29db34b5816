"""Window stats in Redis, shared by every gateway replica and read by the controller.

Each bucket is a hash ``{ns}:win:{track}:{segment}:{variant}:{start}`` (fine)
or ``...:r{start}`` (rollup) of :meth:`WindowStats.to_fields` counters. A
flush is one ``MULTI``/``EXEC`` pipeline of ``HINCRBY``/``HINCRBYFLOAT`` per
field plus an ``EXPIREAT`` per bucket: one round trip, and all-or-nothing, so
a flush that failed can be retried without counting twice. Expiry is absolute
(bucket end + retention), so repeating it on every write moves nothing.

The students a delta names (``stu:`` fields) go to a HyperLogLog beside each
hash (``PFADD`` to ``...:{start}:u``, idempotent like the rest); a read's
distinct students are one ``PFCOUNT`` over the buckets it sums.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from tara import keys
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_fields import FLOAT_FIELDS, Family
from tara.telemetry.window_store import Deltas, Series, Tier, WindowLayout, check_deltas
from tara.telemetry.windows import WindowStats


def bucket_key(namespace: str, tier: Tier, series: Series, start: int) -> str:
    """Redis key of one bucket."""
    suffix = str(start) if tier == "f" else f"r{start}"
    return keys.key(namespace, keys.WINDOWS, *series, suffix)


def students_key(namespace: str, tier: Tier, series: Series, start: int) -> str:
    """Redis key of one bucket's HyperLogLog of students."""
    return bucket_key(namespace, tier, series, start) + ":u"


_STUDENT = Family.STUDENT.value + ":"


class RedisWindowStore:
    """A :class:`~tara.telemetry.window_store.WindowStore` in Redis hashes."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        settings: TelemetryStatsSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._layout = WindowLayout.from_settings(settings or TelemetryStatsSettings())
        self._clock = clock

    @property
    def layout(self) -> WindowLayout:
        """Bucket sizes and lifetimes of this store."""
        return self._layout

    async def add(self, deltas: Deltas) -> None:
        """Apply every delta in one transactional round trip.

        Values are checked first: Redis would refuse a NaN inside ``EXEC``
        after applying the rest, and a retry would then count those twice.
        A name that is not valid UTF-8 fails while the pipeline is encoded,
        before anything is sent.
        """
        if not deltas:
            return
        check_deltas(deltas)
        now = self._clock()
        pipe = self._client.pipeline(transaction=True)
        queued = False
        for key, fields in deltas.items():
            students = [k[len(_STUDENT) :] for k in fields if k.startswith(_STUDENT)]
            for tier, start, expires in self._layout.targets(key.bucket_start, now):
                name = bucket_key(self._namespace, tier, key.series, start)
                queued |= _queue_increments(pipe, name, fields)
                pipe.expireat(name, int(expires) + 1)
                if students:
                    sketch = students_key(self._namespace, tier, key.series, start)
                    pipe.pfadd(sketch, *students)
                    pipe.expireat(sketch, int(expires) + 1)
                    queued = True
        if queued:  # an unexecuted pipeline never took a connection
            await pipe.execute()

    async def ping(self) -> None:
        """Raise unless Redis answers."""
        await self._client.ping()

    async def read(
        self, track: str, segment: str, variant: str, t0: float, t1: float
    ) -> WindowStats:
        """Sum of the series' buckets in ``[t0, t1)``."""
        series = Series(track, segment, variant)
        return (await self.read_many([series], t0, t1))[series]

    async def read_many(
        self, series: Iterable[Series], t0: float, t1: float
    ) -> dict[Series, WindowStats]:
        """:meth:`read` for several series in one pipelined round trip."""
        plan = self._layout.plan(t0, t1, self._clock())
        wanted = [Series(*s) for s in series]
        pipe = self._client.pipeline(transaction=False)
        for s in wanted:
            for tier, start in plan:
                pipe.hgetall(bucket_key(self._namespace, tier, s, start))
            if plan:
                pipe.pfcount(
                    *(students_key(self._namespace, tier, s, start) for tier, start in plan)
                )
        replies: list[Any] = await pipe.execute() if wanted and plan else []
        out: dict[Series, WindowStats] = {}
        step = len(plan) + 1
        for i, s in enumerate(wanted):
            stats = WindowStats(students=0)
            for reply in replies[i * step : i * step + len(plan)]:
                stats.add_fields({keys.text(k): float(v) for k, v in reply.items()})
            if plan:
                stats.students = int(replies[i * step + len(plan)])
            out[s] = stats
        return out

    async def aclose(self) -> None:
        """The client belongs to the caller; nothing else to release."""


def _queue_increments(pipe: Pipeline, name: str, fields: Mapping[str, float]) -> bool:
    queued = False
    for field, value in fields.items():
        if not value or field.startswith(_STUDENT):
            continue
        if field in FLOAT_FIELDS or not float(value).is_integer():
            pipe.hincrbyfloat(name, field, float(value))
        else:
            pipe.hincrby(name, field, int(value))
        queued = True
    return queued
