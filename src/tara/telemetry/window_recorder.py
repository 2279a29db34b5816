"""The window-stats sink: counts requests locally, flushes them to the store each second.

:class:`WindowRecorder` is an :class:`InteractionSink`. ``record`` only adds
numbers to a local map keyed by the request's window bucket; a background
loop hands the whole map to :meth:`WindowStore.add` once per flush interval
(one round trip for all requests of that second). If the store is down, the
batch is merged back and retried on the next flush; the map is bounded by
``max_pending_keys`` buckets, the oldest dropped (and counted as
``backlog_full``) first. If the store answers but refuses the batch, a bucket
in it is bad: the batch is split in halves until the bad bucket stands alone;
it is dropped (counted as ``rejected``) and every other bucket is written.

Feedback and user retries are filed under the bucket of the request they
concern, however late they arrive, so they count for the right variant and
window. The deltas themselves are pure functions.

Each request also names its student (``stu:<hash>``, for the distinct-student
counts of the sample-ratio checks), or counts as ``anon`` without one; a stable
answer to a failed canary request counts as ``fb`` and names no student, so
the canary student it served is not counted as a stable one.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Mapping
from operator import attrgetter
from typing import cast

from tara.telemetry.flush_loop import FlushLoop
from tara.telemetry.interactions import Interaction, Labelled, OnDrop
from tara.telemetry.request_index import CountedFeedback
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_fields import (
    COMPLETION_TOKENS,
    FALLBACKS,
    LATENCY_SUM,
    PROMPT_TOKENS,
    REQUESTS,
    UNIDENTIFIED,
    USER_RETRIES,
    Family,
    add_feedback,
    member,
)
from tara.telemetry.window_store import WindowKey, WindowStore, bucket_start, merge_fields
from tara.telemetry.windows import LATENCY_BOUNDS

log = logging.getLogger(__name__)


_LAT = tuple(member(Family.LATENCY, i) for i in range(len(LATENCY_BOUNDS) + 1))
_TTFT = tuple(member(Family.TTFT, i) for i in range(len(LATENCY_BOUNDS) + 1))
"""Histogram field names by bucket, built once: formatting them cost a µs per request."""
_ERR = Family.ERROR.value + ":"
_STUDENT = Family.STUDENT.value + ":"


def add_interaction(into: dict[str, float], ix: Interaction) -> None:
    """Add the window fields one finished request adds to ``into``, in place.

    Latency and TTFT count only answered requests: a failure is already an
    error, and a 60 s timeout would otherwise also inflate the latency that
    the 2x-slower rollback rule compares.
    """
    # Everything that can fail on a malformed record runs before ``into`` changes.
    lat = ttft = None
    lat_sum = 0.0
    if not ix.error_class:
        if ix.latency_s is not None:
            lat = _LAT[bisect_left(LATENCY_BOUNDS, ix.latency_s)]
            lat_sum = into.get(LATENCY_SUM, 0) + ix.latency_s
        if ix.ttft_s is not None:
            ttft = _TTFT[bisect_left(LATENCY_BOUNDS, ix.ttft_s)]
    student = None if ix.student_hash is None else _STUDENT + ix.student_hash
    get = into.get
    into[REQUESTS] = get(REQUESTS, 0) + 1
    if ix.fallback:
        into[FALLBACKS] = get(FALLBACKS, 0) + 1
    elif student is None:
        into[UNIDENTIFIED] = get(UNIDENTIFIED, 0) + 1
    else:
        into[student] = 1
    if ix.error_class:
        name = _ERR + ix.error_class
        into[name] = get(name, 0) + 1
    if lat is not None:
        into[lat] = get(lat, 0) + 1
        into[LATENCY_SUM] = lat_sum
    if ttft is not None:
        into[ttft] = get(ttft, 0) + 1
    if ix.prompt_tokens:
        into[PROMPT_TOKENS] = get(PROMPT_TOKENS, 0) + ix.prompt_tokens
    if ix.completion_tokens:
        into[COMPLETION_TOKENS] = get(COMPLETION_TOKENS, 0) + ix.completion_tokens
    if ix.user_retry:
        into[USER_RETRIES] = get(USER_RETRIES, 0) + 1


def interaction_delta(ix: Interaction) -> dict[str, float]:
    """The window fields one finished request adds (see :func:`add_interaction`)."""
    out: dict[str, float] = {}
    add_interaction(out, ix)
    return out


def feedback_delta(previous: CountedFeedback | None, current: CountedFeedback) -> dict[str, float]:
    """Fields that turn ``previous`` feedback into ``current`` (empty if they are equal)."""
    out: dict[str, float] = {}
    for sign, fb in ((-1, previous), (1, current)):
        if fb is not None:
            add_feedback(out, fb.rating, fb.tags, fb.relevance, sign)
    return {name: v for name, v in out.items() if abs(v) > 1e-12}


class WindowRecorder:
    """Accumulates window deltas in memory and flushes them to a :class:`WindowStore`."""

    def __init__(
        self,
        store: WindowStore,
        settings: TelemetryStatsSettings | None = None,
        *,
        on_drop: OnDrop | None = None,
    ) -> None:
        settings = settings or TelemetryStatsSettings()
        self.on_drop: OnDrop = on_drop or (lambda reason, count: None)
        """Told ``(reason, buckets)`` for buckets lost: ``rejected`` or ``backlog_full``."""
        self._store = store
        self._bucket_seconds = store.layout.bucket_seconds
        self._max_keys = settings.max_pending_keys
        self._pending: dict[WindowKey, dict[str, float]] = {}
        self._loop = FlushLoop(self.flush, settings.flush_interval, "window-recorder")
        self.flushes = 0
        """Flushes that reached the store."""
        self.flush_failures = 0
        """Flushes the store refused; their deltas were kept for the next one."""
        self.dropped_keys = 0
        """Buckets dropped unflushed: ``max_pending_keys`` reached, or refused by the store."""

    @property
    def pending_keys(self) -> int:
        """Buckets waiting for the next flush."""
        return len(self._pending)

    def key_for(self, ix: Labelled) -> WindowKey:
        """The window bucket of a request."""
        return WindowKey(
            ix.track, ix.segment, ix.variant, bucket_start(ix.created_at, self._bucket_seconds)
        )

    def record(self, interaction: Interaction) -> None:
        """Count a finished request (sink interface: no I/O, never raises)."""
        ix = interaction
        try:
            size = self._bucket_seconds
            # A plain tuple finds the WindowKey it equals; the key is built once per bucket.
            probe = (ix.track, ix.segment, ix.variant, int(ix.created_at // size) * size)
            pending = self._pending.get(cast(WindowKey, probe))
            if pending is None:
                pending = self._pending[WindowKey(*probe)] = {}
                self._bound()
            add_interaction(pending, ix)
        except Exception:  # a malformed record must not break the request path
            log.exception("window recorder: cannot count request %s", ix.request_id)

    def record_feedback(
        self, key: WindowKey, previous: CountedFeedback | None, current: CountedFeedback
    ) -> None:
        """File a (possibly replaced) rating under the bucket of the request it rates."""
        self.add(key, feedback_delta(previous, current))

    def record_user_retry(self, key: WindowKey) -> None:
        """Count one user retry in the bucket of the retried request."""
        self.add(key, {"uretry": 1})

    def add(self, key: WindowKey, fields: Mapping[str, float]) -> None:
        """Add raw field increments to a bucket's pending delta."""
        if not fields:
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = {}
            self._bound()
        merge_fields(pending, fields)

    def start(self) -> None:
        """Flush every flush interval in the background."""
        self._loop.start()

    async def flush(self) -> bool:
        """Send all pending deltas in one :meth:`WindowStore.add`; ``False`` if it failed."""
        batch, self._pending = self._pending, {}
        if not batch:
            return True
        try:
            await self._store.add(batch)
        except Exception as exc:
            left = await self._split(batch) if await self._reachable() else batch
            if left:
                self.flush_failures += 1
                self._merge_back(left)
                log.warning("window recorder: flush of %d buckets failed: %s", len(left), exc)
                return False
        self.flushes += 1
        return True

    async def _reachable(self) -> bool:
        try:
            await self._store.ping()
        except Exception:
            return False
        return True

    async def _split(
        self, batch: dict[WindowKey, dict[str, float]]
    ) -> dict[WindowKey, dict[str, float]]:
        """Write a refused batch half by half, dropping the buckets refused alone.

        Returns what is left unwritten because the store went down meanwhile.
        """
        items = list(batch.items())
        todo = [(0, len(items))]  # the next range is last
        while todo:
            lo, hi = todo.pop()
            part = dict(items[lo:hi])
            try:
                await self._store.add(part)
            except Exception as exc:
                if not await self._reachable():
                    left = dict(items[lo:hi])
                    for a, b in todo:
                        left.update(items[a:b])
                    return left
                if hi - lo > 1:
                    mid = (lo + hi) // 2
                    todo += [(mid, hi), (lo, mid)]
                    continue
                log.error("window recorder: the store refused bucket %s: %s", items[lo][0], exc)
                self.dropped_keys += 1
                self.on_drop("rejected", 1)
        return {}

    async def aclose(self) -> None:
        """Stop the loop and flush what is left (one try)."""
        await self._loop.stop()

    def _merge_back(self, batch: dict[WindowKey, dict[str, float]]) -> None:
        # Deltas recorded during the failed flush are newer; add the batch under them.
        for key, fields in self._pending.items():
            merge_fields(batch.setdefault(key, {}), fields)
        self._pending = batch
        self._bound()

    def _bound(self) -> None:
        if len(self._pending) <= self._max_keys:
            return
        excess = len(self._pending) - self._max_keys
        for key in sorted(self._pending, key=attrgetter("bucket_start"))[:excess]:
            del self._pending[key]
        self.dropped_keys += excess
        self.on_drop("backlog_full", excess)
        log.warning("window recorder: dropped %d unflushed buckets (store down?)", excess)
