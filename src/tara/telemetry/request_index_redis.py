"""The request index in Redis, shared by every replica for cross-replica feedback joins.

Each request is a hash ``{ns}:ix:{request_id}`` expiring ``index_retention_seconds``
after the request. Replicas publish their requests in batches (one script call
per flush interval, the entries as one JSON argument) and keep recent ones in
a local LRU; ``record``, on the request path, only queues the interaction.
Setting feedback is one Lua call that reads the entry and swaps the feedback
atomically, so two concurrent ratings of one answer count once; if this
replica still holds the request unpublished, the same call creates the entry
from the local copy.
Feedback for a request another replica has not published yet is retried for
up to ``index_lookup_wait`` seconds before the id is called unknown.

A publishing call that fails while Redis answers has an entry in it that
cannot be published (text that is not valid UTF-8): the chunk is split in
halves until that entry stands alone, and only it is dropped (``rejected``).
While Redis is down, entries stay queued (bounded; the oldest are dropped as
``backlog_full``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tara import keys
from tara.telemetry.flush_loop import FlushLoop
from tara.telemetry.interactions import Interaction, OnDrop
from tara.telemetry.request_index import (
    CountedFeedback,
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
local rows = cjson.decode(ARGV[2])
local null = cjson.null
for k = 1, #rows do
  local r = rows[k]
  local key = ARGV[1] .. r[1]
  local f = {'c', r[2], 't', r[4], 's', r[5], 'v', r[6], 'm', r[7]}
  if r[8] ~= null then f[#f + 1] = 'sub'; f[#f + 1] = r[8] end
  if r[9] ~= null then f[#f + 1] = 'lang'; f[#f + 1] = r[9] end
  if r[10] ~= null then f[#f + 1] = 'sh'; f[#f + 1] = r[10] end
  redis.call('HSET', key, unpack(f))
  redis.call('EXPIREAT', key, r[3])
end
return #rows
"""
PUBLISH_CHUNK = 2000
"""Entries per publishing call: one call per flush at normal rates, and Redis is
never blocked long by a backlog. The entries travel as one JSON argument (see
:data:`Row`): redis-py spends ~1 µs of client CPU per command argument, and
an entry as separate arguments has ~18 (17 µs per request measured, against
~2 µs as JSON). The script builds the keys from the namespace prefix, so they
are not declared in ``KEYS``; that only matters to Redis Cluster, which the
gateway does not use."""

Row = tuple[str, str, str, str, str, str, str, str | None, str | None, str | None]
"""An entry as published: request id, ``created_at`` as text (``repr``'s digits), expiry
(unix seconds, as text), track, segment, variant, model, subject, language, student hash."""


def interaction_row(ix: Interaction, retention: float) -> Row:
    """The published form of a finished interaction, expiring ``retention`` after it."""
    return (
        ix.request_id,
        # orjson's float text is repr()'s (both the shortest that reads back exactly) at a
        # fifth of the cost: repr(float) is ~7.7k instructions, a third of this row's.
        orjson.dumps(ix.created_at).decode(),
        str(int(ix.created_at + retention) + 1),
        ix.track,
        ix.segment,
        ix.variant,
        ix.model,
        ix.subject,
        ix.language,
        ix.student_hash,
    )


Held = tuple[float, str, str, str, str, str | None, str | None, str | None]
"""A published entry as the local LRU holds it (the request id is its key): created
at, track, segment, variant, model, subject, language, student hash.

The LRU fills up (``index_cache_size``, 100,000 by default) on every busy
replica, so its entries are kept small: the time as a float, and the few
distinct track, segment, variant, model, subject and language strings shared
between entries: about 360 bytes an entry instead of 640 as published rows,
28 MB less at the default size (measured with tracemalloc)."""


def _shared(value: str | None) -> str | None:
    # Interned strings are freed again with their last entry, so odd values cannot pile up.
    return None if value is None else sys.intern(value)


def held_form(ix: Interaction) -> Held:
    """What the LRU keeps of a published interaction."""
    return (
        ix.created_at,
        sys.intern(ix.track),
        sys.intern(ix.segment),
        sys.intern(ix.variant),
        sys.intern(ix.model),
        _shared(ix.subject),
        _shared(ix.language),
        ix.student_hash,
    )


def held_entry(request_id: str, held: Held) -> IndexedRequest:
    """The index entry a held form describes (without feedback)."""
    created_at, track, segment, variant, model, subject, language, student_hash = held
    return IndexedRequest(
        request_id=request_id,
        created_at=created_at,
        track=track,
        segment=segment,
        variant=variant,
        model=model,
        subject=subject,
        language=language,
        student_hash=student_hash,
    )


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


def feedback_json(feedback: CountedFeedback) -> bytes:
    """Stored form of feedback."""
    return orjson.dumps({"r": feedback.rating, "t": list(feedback.tags), "rel": feedback.relevance})


def parse_entry(request_id: str, raw: Mapping[Any, Any]) -> IndexedRequest:
    """Inverse of :func:`entry_fields` plus the feedback field."""
    f = {keys.text(k): keys.text(v) for k, v in raw.items()}
    feedback = None
    if "fb" in f:
        data = orjson.loads(f["fb"])
        feedback = CountedFeedback(data["r"], tuple(data["t"]), data["rel"])
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


class RedisRequestIndex:
    """A :class:`~tara.telemetry.request_index.RequestIndex` shared through Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        settings: TelemetryStatsSettings | None = None,
        clock: Callable[[], float] = time.time,
        on_drop: OnDrop | None = None,
    ) -> None:
        settings = settings or TelemetryStatsSettings()
        self.on_drop: OnDrop = on_drop or (lambda reason, count: None)
        """Told ``(reason, count)`` of entries lost: ``rejected`` or ``backlog_full``."""
        self._client = client
        self._namespace = namespace
        self._retention = settings.index_retention_seconds
        self._wait = settings.index_lookup_wait
        self._capacity = settings.index_cache_size
        self._clock = clock
        self._prefix = keys.key(namespace, keys.INTERACTIONS, "")
        # Recent ids, oldest first: published requests (held forms), or entries read back from
        # Redis or rated here. Plain dicts: insertion order is the LRU order.
        self._recent: dict[str, Held | IndexedRequest] = {}
        self._queue: dict[str, tuple[bytes, Held]] = {}
        self._script = client.register_script(_SET_FEEDBACK)
        self._publish = client.register_script(_PUBLISH)
        self._loop = FlushLoop(self.flush, settings.flush_interval, "request-index", phase=1 / 3)
        self.flush_failures = 0
        """Publishing flushes that failed (their entries were kept for the next one)."""
        self.dropped = 0
        """Entries never published: the queue was full during an outage, or Redis refused them."""

    def record(self, interaction: Interaction) -> None:
        """Queue the request for publishing (it is a local entry from now on).

        Called once the answer is sent. The published row (as its JSON) and the
        held form are built here, a few microseconds a request: built at the
        flush, a second's worth at once held the event loop for milliseconds.
        A row JSON cannot carry (a lone surrogate) is dropped as ``rejected``.
        """
        queue = self._queue
        ix = interaction
        try:
            row = orjson.dumps(interaction_row(ix, self._retention))
        except orjson.JSONEncodeError:
            log.error("request index: cannot publish entry %r; dropped", ix.request_id)
            self._drop("rejected", 1)
            return
        queue[ix.request_id] = (row, held_form(ix))
        if len(queue) > self._capacity:
            del queue[next(iter(queue))]
            self._drop("backlog_full", 1)

    def start(self) -> None:
        """Publish queued entries every flush interval in the background."""
        self._loop.start()

    async def flush(self) -> None:
        """Publish every queued entry, one script call per chunk; on failure keep them queued."""
        batch, self._queue = self._queue, {}
        if not batch:
            return
        rows = [row for row, _ in batch.values()]
        published = 0
        for i in range(0, len(rows), PUBLISH_CHUNK):
            chunk = rows[i : i + PUBLISH_CHUNK]
            try:
                await self._send(chunk)
            except Exception:
                if not await self._reachable() or not await self._isolate(chunk):
                    break
            published = i + len(chunk)
        if published < len(rows):
            # Publishing is idempotent (feedback is never overwritten), so the
            # chunks that did land can safely be written again. Records queued
            # meanwhile are newer: they go after the batch, and the bound drops
            # the oldest.
            self.flush_failures += 1
            batch.update(self._queue)
            self._queue = batch
            excess = len(batch) - self._capacity
            for rid in list(itertools.islice(batch, max(0, excess))):
                del batch[rid]
            self._drop("backlog_full", max(0, excess))
            log.warning("request index: publishing %d entries failed; will retry", len(rows))
            return
        recent = self._recent
        for request_id, (_, held_now) in batch.items():
            # A re-published id moves to the recent end, keeping feedback given here.
            held = recent.pop(request_id, None)
            recent[request_id] = held if isinstance(held, IndexedRequest) else held_now
        self._trim()

    async def aclose(self) -> None:
        """Stop the loop and publish what is left."""
        await self._loop.stop()

    async def _send(self, rows: list[bytes]) -> None:
        """One publishing call: the rows' JSON, joined as one array."""
        await self._publish(keys=[], args=[self._prefix, b"[" + b",".join(rows) + b"]"])

    async def _reachable(self) -> bool:
        try:
            await self._client.ping()
        except (RedisError, OSError):
            return False
        return True

    async def _isolate(self, rows: list[bytes]) -> bool:
        """Publish a refused chunk half by half, dropping the entries refused alone.

        ``False`` if Redis went down meanwhile (the whole chunk is then kept
        for the next flush: publishing twice is harmless).
        """
        if len(rows) == 1:
            log.error("request index: Redis refused entry %r; dropped", orjson.loads(rows[0])[0])
            self._drop("rejected", 1)
            return True
        mid = len(rows) // 2
        for half in (rows[:mid], rows[mid:]):
            try:
                await self._send(half)
            except Exception:
                if not await self._reachable() or not await self._isolate(half):
                    return False
        return True

    def _drop(self, reason: str, count: int) -> None:
        if count > 0:
            self.dropped += count
            self.on_drop(reason, count)

    def _local(self, request_id: str) -> IndexedRequest | None:
        """This replica's copy of an entry, queued or published (feedback maybe stale)."""
        queued = self._queue.get(request_id)
        if queued is not None:
            seen = self._recent.get(request_id)
            feedback = seen.feedback if isinstance(seen, IndexedRequest) else None
            return replace(held_entry(request_id, queued[1]), feedback=feedback)
        held = self._recent.get(request_id)
        if held is None or isinstance(held, IndexedRequest):
            return held
        return held_entry(request_id, held)

    async def lookup(self, request_id: str) -> IndexedRequest | None:
        """Local LRU first (its feedback may be stale), then Redis, retried briefly."""
        entry = self._local(request_id)
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

    async def set_feedback(
        self, request_id: str, feedback: CountedFeedback
    ) -> FeedbackChange | None:
        """Swap the stored feedback atomically; ``None`` if the id stays unknown."""
        deadline = self._clock() + self._wait
        while True:
            local = self._local(request_id)
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
        feedback: CountedFeedback,
    ) -> FeedbackChange:
        if raw:
            before = parse_entry(request_id, dict(zip(raw[::2], raw[1::2], strict=True)))
        else:
            assert local is not None  # the script only creates an entry from a local copy
            before = replace(local, feedback=None)
        self._remember(replace(before, feedback=feedback))
        return FeedbackChange(before, before.feedback)

    def _remember(self, entry: IndexedRequest) -> None:
        self._recent.pop(entry.request_id, None)
        self._recent[entry.request_id] = entry
        self._trim()

    def _trim(self) -> None:
        excess = len(self._recent) - self._capacity
        if excess > 0:
            for rid in list(itertools.islice(self._recent, excess)):
                del self._recent[rid]

    def _live(self, entry: IndexedRequest) -> bool:
        return entry.created_at + self._retention > self._clock()

    def _key(self, request_id: str) -> str:
        return keys.key(self._namespace, keys.INTERACTIONS, request_id)
