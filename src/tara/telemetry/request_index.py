"""The request index: which variant and window a request id belongs to, for feedback.

Feedback names only a request id and may reach any replica, minutes or weeks
after the answer. The index maps the id to what the rating must be filed
under (track, segment, variant, time) and to the feedback already given, so a
replaced rating becomes a ``-1 old / +1 new`` delta instead of a second count.

The gateway feeds it as an :class:`InteractionSink` (never blocking); the
feedback endpoint calls :meth:`RequestIndex.set_feedback`. This module holds
the types, the protocol and the single-process implementation; the shared one
is in :mod:`tara.telemetry.request_index_redis`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tara.telemetry.interactions import Interaction, OnDrop
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_store import WindowKey, bucket_start


@dataclass(frozen=True, slots=True)
class CountedFeedback:
    """The part of a request's feedback the window stats count (rating, tags, relevance).

    The latest feedback replaces earlier ones; the full feedback, comment and
    time included, is :class:`tara.telemetry.log.Feedback`.
    """

    rating: int | None = None
    tags: tuple[str, ...] = ()
    relevance: float | None = None


@dataclass(frozen=True, slots=True)
class IndexedRequest:
    """What the index knows about one request id."""

    request_id: str
    created_at: float
    track: str
    segment: str
    variant: str
    model: str
    subject: str | None = None
    language: str | None = None
    student_hash: str | None = None
    feedback: CountedFeedback | None = None

    @classmethod
    def from_interaction(cls, ix: Interaction) -> IndexedRequest:
        """The index entry of a finished interaction (without feedback)."""
        return cls(
            request_id=ix.request_id,
            created_at=ix.created_at,
            track=ix.track,
            segment=ix.segment,
            variant=ix.variant,
            model=ix.model,
            subject=ix.subject,
            language=ix.language,
            student_hash=ix.student_hash,
        )

    def window_key(self, bucket_seconds: int) -> WindowKey:
        """The window bucket the request was counted in."""
        return WindowKey(
            self.track, self.segment, self.variant, bucket_start(self.created_at, bucket_seconds)
        )


@dataclass(frozen=True, slots=True)
class FeedbackChange:
    """Result of :meth:`RequestIndex.set_feedback`: the request and what it replaced."""

    request: IndexedRequest
    previous: CountedFeedback | None


class IndexUnavailableError(Exception):
    """The shared index could not be reached; feedback should be retried (HTTP 503)."""


class RequestIndex(Protocol):
    """Request id → :class:`IndexedRequest`, shared by the replicas that use it."""

    def record(self, interaction: Interaction) -> None:
        """Index a finished interaction; never blocks, never raises."""

    async def lookup(self, request_id: str) -> IndexedRequest | None:
        """The entry for ``request_id``, waiting briefly for a replica that has not
        published it yet; ``None`` if it stays unknown. Raises :class:`IndexUnavailableError`."""

    async def set_feedback(
        self, request_id: str, feedback: CountedFeedback
    ) -> FeedbackChange | None:
        """Atomically store ``feedback`` and return what it replaced; ``None`` for an
        unknown request id (after the same brief wait). Raises :class:`IndexUnavailableError`."""

    def start(self) -> None:
        """Start background publishing, if the implementation batches."""

    async def flush(self) -> None:
        """Publish what is queued now."""

    async def aclose(self) -> None:
        """Publish what is queued and stop."""


EVICT_SHARE = 64
"""A full memory index evicts 1/64 of its entries at a time, so the count of what it
pushed out reaches the metric once per batch, not once per request."""


_Route = tuple[str, str, str, str, str | None, str | None]
"""Track, segment, variant, model, subject and language: what many requests share."""

_Entry = tuple[float, _Route, bytes | str | None, CountedFeedback | None]
"""One request in :class:`MemoryRequestIndex`: created at, route, student hash, feedback."""

ROUTES_BOUND = 4_096
"""Distinct routes the memory index shares between its entries before it starts afresh."""


def _packed_hash(student_hash: str | None) -> bytes | str | None:
    # A hex digest is held as its bytes: 65 bytes of object instead of 113.
    if student_hash is None or len(student_hash) % 2:
        return student_hash
    try:
        packed = bytes.fromhex(student_hash)
    except ValueError:
        return student_hash
    return packed if packed.hex() == student_hash else student_hash


def _unpacked_hash(held: bytes | str | None) -> str | None:
    return held.hex() if isinstance(held, bytes) else held


class MemoryRequestIndex:
    """A :class:`RequestIndex` for one process: an LRU dict with expiry.

    It holds at most ``index_cache_size`` entries, ~370 bytes each (measured:
    50,000 entries cost 17.3 MiB of RSS, and 21.2 MiB when each was an
    :class:`IndexedRequest` with its own hex student hash). An entry is a
    tuple: the time, the route (track, segment, variant, model, subject,
    language: one tuple shared by every request of that route), the student
    hash as bytes, and the feedback; :meth:`lookup` builds the
    :class:`IndexedRequest`. Beyond the bound the oldest go, a batch at a
    time, and ``on_drop("evicted", n)`` counts those still within the
    retention (their feedback will find no request).
    """

    def __init__(
        self,
        settings: TelemetryStatsSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_drop: OnDrop | None = None,
    ) -> None:
        settings = settings or TelemetryStatsSettings()
        self._capacity = settings.index_cache_size
        self._batch = max(1, self._capacity // EVICT_SHARE)
        self._retention = settings.index_retention_seconds
        self._clock = clock
        self.on_drop: OnDrop = on_drop or (lambda reason, count: None)
        """Told ``("evicted", n)`` for entries pushed out that could still be rated."""
        # Insertion order is the LRU order (a plain dict is smaller than an OrderedDict).
        self._entries: dict[str, _Entry] = {}
        self._routes: dict[_Route, _Route] = {}

    def __len__(self) -> int:
        """Entries held."""
        return len(self._entries)

    def _route(self, ix: Interaction) -> _Route:
        route = (ix.track, ix.segment, ix.variant, ix.model, ix.subject, ix.language)
        shared = self._routes.get(route)
        if shared is None:
            if len(self._routes) >= ROUTES_BOUND:  # odd values cannot pile up
                self._routes.clear()
            shared = self._routes[route] = route
        return shared

    def record(self, interaction: Interaction) -> None:
        """Index a finished interaction, evicting the oldest beyond capacity."""
        ix = interaction
        entries = self._entries
        old = entries.pop(ix.request_id, None)
        entries[ix.request_id] = (
            ix.created_at,
            self._route(ix),
            _packed_hash(ix.student_hash),
            None if old is None else old[3],  # a re-record keeps feedback given
        )
        if len(entries) > self._capacity:
            self._evict(len(entries) - self._capacity + self._batch - 1)

    def _evict(self, count: int) -> None:
        live = self._clock() - self._retention
        entries = self._entries
        oldest = list(itertools.islice(entries, count))
        evicted = 0
        for request_id in oldest:
            evicted += entries.pop(request_id)[0] > live
        if evicted:
            self.on_drop("evicted", evicted)

    async def lookup(self, request_id: str) -> IndexedRequest | None:
        """The entry, or ``None`` if unknown or older than the retention."""
        entry = self._entries.get(request_id)
        if entry is None:
            return None
        created_at, route, student_hash, feedback = entry
        if created_at + self._retention <= self._clock():
            del self._entries[request_id]
            return None
        return IndexedRequest(
            request_id, created_at, *route, _unpacked_hash(student_hash), feedback
        )

    async def set_feedback(
        self, request_id: str, feedback: CountedFeedback
    ) -> FeedbackChange | None:
        """Store feedback; no ``await`` between read and write, so it is atomic."""
        entry = await self.lookup(request_id)
        if entry is None:
            return None
        created_at, route, student_hash, _ = self._entries[request_id]
        self._entries[request_id] = (created_at, route, student_hash, feedback)
        return FeedbackChange(entry, entry.feedback)

    def start(self) -> None:
        """Nothing runs in the background."""

    async def flush(self) -> None:
        """Nothing is queued."""

    async def aclose(self) -> None:
        """Nothing to release."""
