"""Window stats in Redis, shared by every gateway replica and read by the controller.

Each bucket is a hash ``{ns}:win:{track}:{segment}:{variant}:{start}`` (fine)
or ``...:r{start}`` (rollup) of :meth:`WindowStats.to_fields` counters. A
flush is one script call that runs ``HINCRBY``/``HINCRBYFLOAT`` per field and
an ``EXPIREAT`` per bucket: one round trip, and atomic like a ``MULTI``/``EXEC``
transaction, so a flush that failed can be retried without counting twice.
Expiry is absolute (bucket end + retention), so repeating it on every write
moves nothing. (The same commands as a transaction pipeline cost redis-py's
pure-Python client ~7M instructions a flush, packing each command and parsing
each reply: more than a hundred requests' worth of gateway work at a few
requests a second.)

The students a delta names (``stu:`` fields) go to a HyperLogLog beside each
hash (``PFADD`` to ``...:{start}:u``, idempotent like the rest); a read's
distinct students are one ``PFCOUNT`` over the buckets it sums.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis

from tara import keys
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_fields import FLOAT_FIELDS, Family
from tara.telemetry.window_store import Deltas, Series, Tier, WindowLayout, check_deltas
from tara.telemetry.windows import WindowStats


def bucket_key(namespace: str, tier: Tier, series: Series, start: int) -> str:
    """Redis key of one bucket."""
    suffix = str(start) if tier == "f" else f"r{start}"
    return keys.key(namespace, keys.WINDOWS, *series, suffix)


_STUDENTS = ":u"
"""Suffix of a bucket's key naming its HyperLogLog of students (the flush script's too)."""


def students_key(namespace: str, tier: Tier, series: Series, start: int) -> str:
    """Redis key of one bucket's HyperLogLog of students."""
    return bucket_key(namespace, tier, series, start) + _STUDENTS


_STUDENT = Family.STUDENT.value + ":"

_ADD = """
local a = ARGV
local i = 1
while i <= #a do
  local key, expires = a[i], a[i + 1]
  local ints = tonumber(a[i + 2])
  i = i + 3
  for _ = 1, ints do
    redis.call('HINCRBY', key, a[i], a[i + 1])
    i = i + 2
  end
  local floats = tonumber(a[i])
  i = i + 1
  for _ = 1, floats do
    redis.call('HINCRBYFLOAT', key, a[i], a[i + 1])
    i = i + 2
  end
  redis.call('EXPIREAT', key, expires)
  local students = tonumber(a[i])
  i = i + 1
  if students > 0 then
    local sketch = key .. '$STUDENTS'
    for first = i, i + students - 1, 1000 do
      redis.call('PFADD', sketch, unpack(a, first, math.min(first + 999, i + students - 1)))
    end
    redis.call('EXPIREAT', sketch, expires)
    i = i + students
  end
end
return 1
""".replace("$STUDENTS", _STUDENTS)
"""Applies buckets given as one flat argument list, each as: key, expiry, the count of
integer increments and their field/value pairs, the same for float increments, the
count of students and their hashes (``PFADD`` in slices, within Lua's stack limit). The keys
travel as arguments, not in ``KEYS``; that only matters to Redis Cluster, which the gateway
does not use (the request index's and retry memory's scripts do the same)."""


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
        self._script = client.register_script(_ADD)

    @property
    def layout(self) -> WindowLayout:
        """Bucket sizes and lifetimes of this store."""
        return self._layout

    async def add(self, deltas: Deltas) -> None:
        """Apply every delta in one atomic round trip (one script call).

        Values are checked first: Redis would refuse a NaN inside the script
        after applying the rest, and a retry would then count those twice.
        A name that is not valid UTF-8 fails while the arguments are encoded,
        before anything is sent.
        """
        if not deltas:
            return
        check_deltas(deltas)
        now = self._clock()
        args: list[str] = []
        for key, fields in deltas.items():
            increments = _increments(fields)
            students = [k[len(_STUDENT) :] for k in fields if k.startswith(_STUDENT)]
            if increments == _NONE and not students:
                continue
            for tier, start, expires in self._layout.targets(key.bucket_start, now):
                name = bucket_key(self._namespace, tier, key.series, start)
                args += (name, str(int(expires) + 1), *increments)
                args.append(str(len(students)))
                args += students
        if args:  # redis-py encodes the arguments before sending: bad text sends nothing
            await self._script(keys=[], args=args)

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


_NONE = ["0", "0"]
"""What :func:`_increments` gives for a bucket without counters."""


def _increments(fields: Mapping[str, float]) -> list[str]:
    """A bucket's non-zero counters as the script takes them: the integer ones, then the
    float ones, each as their count and field/value pairs (``stu:`` fields excluded)."""
    ints: list[str] = []
    floats: list[str] = []
    for field, value in fields.items():
        if not value or field.startswith(_STUDENT):
            continue
        if field in FLOAT_FIELDS or not float(value).is_integer():
            floats += (field, repr(float(value)))
        else:
            ints += (field, str(int(value)))
    return [str(len(ints) // 2), *ints, str(len(floats) // 2), *floats]
