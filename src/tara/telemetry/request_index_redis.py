"""The request index in Redis, shared by every replica for cross-replica feedback joins.

Each request is a hash ``{ns}:ix:{request_id}`` expiring ``index_retention_seconds``
after the request. Replicas publish their requests in batches (one script call
per flush interval) and keep recent ones in a local LRU. Setting feedback is one
Lua call that reads the entry and swaps the feedback atomically, so two
concurrent ratings of one answer count once; if this replica still holds the
request unpublished, the same call creates the entry from the local copy.
Feedback for a request another replica has not published yet is retried for
up to ``index_lookup_wait`` seconds before the id is called unknown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tara import keys
from tara.telemetry.flush_loop import FlushLoop
from tara.telemetry.interactions import Interaction
from tara.telemetry.request_index import (
    Feedback,
    FeedbackChange,
    IndexedRequest,
    IndexUnavailableError,
)
from tara.telemetry.stats_config import TelemetryStatsSettings

log = logging.getLogger(__name__)

RETRY_STEP = 0.1
"""Seconds between looks for a request id another replica has not published yet."""

_SET_FEEDBACK = """
local cur = redis.call('HGETALL', KEYS[1])
if #cur == 0 then
  if #ARGV < 3 then return false end
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
redis.call('HSET', KEYS[1], 'fb', ARGV[1])
return cur
"""

_PUBLISH = """
local i = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[i + 1])
  redis.call('HSET', KEYS[k], unpack(ARGV, i + 2, i + 1 + n))
  redis.call('EXPIREAT', KEYS[k], ARGV[i])
  i = i + 2 + n
end
return #KEYS
"""
PUBLISH_CHUNK = 2000
"""Entries per publishing call: one call per flush at normal rates, and Redis is
never blocked long by a backlog. A script call costs the client far less CPU
than a pipeline of two commands per entry (15 vs 38 µs per entry measured)."""


def entry_fields(entry: IndexedRequest) -> dict[str, str]:
    """The hash fields of an entry (feedback excluded: only ``set_feedback`` writes it)."""
    fields = {
        "c": repr(entry.created_at),
        "t": entry.track,
        "s": entry.segment,
        "v": entry.variant,
        "m": entry.model,
    }
    for name, value in (("sub", entry.subject), ("lang", entry.language)):
        if value is not None:
            fields[name] = value
    if entry.student_hash is not None:
        fields["sh"] = entry.student_hash
    return fields


def feedback_json(feedback: Feedback) -> bytes:
    """Stored form of feedback."""
    return orjson.dumps({"r": feedback.rating, "t": list(feedback.tags), "rel": feedback.relevance})


def parse_entry(request_id: str, raw: Mapping[Any, Any]) -> IndexedRequest:
    """Inverse of :func:`entry_fields` plus the feedback field."""
    f = {_text(k): _text(v) for k, v in raw.items()}
    feedback = None
    if "fb" in f:
        data = orjson.loads(f["fb"])
        feedback = Feedback(data["r"], tuple(data["t"]), data["rel"])
    return IndexedRequest(
        request_id=request_id,
        created_at=float(f["c"]),
        track=f["t"],
        segment=f["s"],
        variant=f["v"],
        model=f["m"],
        subject=f.get("sub"),
        language=f.get("lang"),
        student_hash=f.get("sh"),
        feedback=feedback,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisRequestIndex:
    """A :class:`~tara.telemetry.request_index.RequestIndex` shared through Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        settings: TelemetryStatsSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = settings or TelemetryStatsSettings()
        self._client = client
        self._namespace = namespace
        self._retention = settings.index_retention_seconds
        self._wait = settings.index_lookup_wait
        self._capacity = settings.index_cache_size
        self._clock = clock
        self._recent: OrderedDict[str, IndexedRequest] = OrderedDict()
        self._queue: list[IndexedRequest] = []
        self._script = client.register_script(_SET_FEEDBACK)
        self._publish = client.register_script(_PUBLISH)
        self._loop = FlushLoop(self.flush, settings.flush_interval, "request-index")
        self.flush_failures = 0
        """Publishing flushes that failed (their entries were kept for the next one)."""
        self.dropped = 0
        """Entries dropped unpublished because the queue was full during an outage."""

    def record(self, interaction: Interaction) -> None:
        """Queue the request for publishing and remember it locally."""
        entry = IndexedRequest.from_interaction(interaction)
        self._remember(entry)
        self._queue.append(entry)
        if len(self._queue) > self._capacity:
            excess = len(self._queue) - self._capacity
            del self._queue[:excess]
            self.dropped += excess

    def start(self) -> None:
        """Publish queued entries every flush interval in the background."""
        self._loop.start()

    async def flush(self) -> None:
        """Publish every queued entry in one pipeline; on failure keep them queued."""
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            for i in range(0, len(batch), PUBLISH_CHUNK):
                chunk = batch[i : i + PUBLISH_CHUNK]
                names: list[str] = []
                args: list[Any] = []
                for entry in chunk:
                    names.append(self._key(entry.request_id))
                    fields = entry_fields(entry)
                    args += [int(entry.created_at + self._retention) + 1, 2 * len(fields)]
                    for item in fields.items():
                        args += item
                await self._publish(keys=names, args=args)
        except (RedisError, OSError):
            # Publishing is idempotent (feedback is never overwritten), so the
            # chunks that did land can safely be written again.
            self.flush_failures += 1
            self._queue[:0] = batch
            log.warning("request index: publishing %d entries failed; will retry", len(batch))

    async def aclose(self) -> None:
        """Stop the loop and publish what is left."""
        await self._loop.stop()

    async def lookup(self, request_id: str) -> IndexedRequest | None:
        """Local LRU first (its feedback may be stale), then Redis, retried briefly."""
        entry = self._recent.get(request_id)
        if entry is not None and self._live(entry):
            return entry
        deadline = self._clock() + self._wait
        while True:
            try:
                raw = await self._client.hgetall(self._key(request_id))
            except (RedisError, OSError) as exc:
                raise IndexUnavailableError(str(exc)) from exc
            if raw:
                entry = parse_entry(request_id, raw)
                self._remember(entry)
                return entry
            if self._clock() >= deadline:
                return None
            await asyncio.sleep(RETRY_STEP)

    async def set_feedback(self, request_id: str, feedback: Feedback) -> FeedbackChange | None:
        """Swap the stored feedback atomically; ``None`` if the id stays unknown."""
        deadline = self._clock() + self._wait
        while True:
            local = self._recent.get(request_id)
            args: list[Any] = [feedback_json(feedback), 0]
            if local is not None and self._live(local):
                args[1] = int(local.created_at + self._retention) + 1
                for name, value in entry_fields(local).items():
                    args += [name, value]
            try:
                raw = await self._script(keys=[self._key(request_id)], args=args)
            except (RedisError, OSError) as exc:
                raise IndexUnavailableError(str(exc)) from exc
            if raw is not None:
                return self._change(request_id, raw, local, feedback)
            if self._clock() >= deadline:
                return None
            await asyncio.sleep(RETRY_STEP)

    def _change(
        self,
        request_id: str,
        raw: list[Any],
        local: IndexedRequest | None,
        feedback: Feedback,
    ) -> FeedbackChange:
        if raw:
            before = parse_entry(request_id, dict(zip(raw[::2], raw[1::2], strict=True)))
        else:
            assert local is not None  # the script only creates an entry from a local copy
            before = replace(local, feedback=None)
        self._remember(replace(before, feedback=feedback))
        return FeedbackChange(before, before.feedback)

    def _remember(self, entry: IndexedRequest) -> None:
        self._recent[entry.request_id] = entry
        self._recent.move_to_end(entry.request_id)
        while len(self._recent) > self._capacity:
            self._recent.popitem(last=False)

    def _live(self, entry: IndexedRequest) -> bool:
        return entry.created_at + self._retention > self._clock()

    def _key(self, request_id: str) -> str:
        return keys.key(self._namespace, keys.INTERACTIONS, request_id)
