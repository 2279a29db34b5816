"""The telemetry pipeline: every sink of the gateway, built from settings, run as one unit.

:class:`Telemetry` owns what the gateway records besides Prometheus: the
user-retry detector, the window-stats recorder, the request index (for
feedback joins) and the interaction-log writer, over the memory or Redis state
store and the SQLite or PostgreSQL log. It is the gateway's list of sinks, a
service to run for the gateway's lifetime (``async with telemetry: ...``), and
the back end of ``POST /v1/feedback`` (:meth:`Telemetry.submit_feedback`).

Prometheus and replaced ratings: a histogram cannot take an observation
back, so ``tara_feedback_rating`` observes each request's *first* rating
only, and ``tara_feedback_tags_total`` counts a tag when it is newly added to
a request's feedback (a replacement that keeps a tag does not count it
again; one that drops it does not un-count it). The exact, replaced-in-place
numbers are in the window stats and the log, which the controller and the
triggers read; Prometheus is for dashboards and alerts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from tara.settings import Settings
from tara.telemetry.interactions import InteractionSink, OnDrop
from tara.telemetry.log import Feedback as LogFeedback
from tara.telemetry.log import InteractionLog
from tara.telemetry.log_backends import open_log
from tara.telemetry.log_writer import InteractionLogWriter
from tara.telemetry.metrics import MetricsRecorder
from tara.telemetry.request_index import (
    CountedFeedback,
    IndexedRequest,
    IndexUnavailableError,
)
from tara.telemetry.user_retries import RetryFound, UserRetryDetector
from tara.telemetry.window_recorder import WindowRecorder

if TYPE_CHECKING:
    from tara.state import SharedState

log = logging.getLogger(__name__)

FEEDBACK_TAGS: tuple[str, ...] = (
    "cultural",
    "irrelevant",
    "wrong",
    "language",
    "too_long",
    "too_short",
    "unclear",
    "incomplete",
)
"""Tags a rating may carry: ``cultural`` is a cultural-appropriateness complaint,
``language`` an answer in the wrong language or register."""


@runtime_checkable
class _Bounded(Protocol):
    """A part of the state that counts what its bound pushes out: the memory request
    index, window store and retry memory, and the Redis request index's queue.

    Checked by attribute, not by class, so that this module needs neither the
    Redis implementations (and the Redis client) nor the memory ones.
    """

    on_drop: OnDrop


@dataclass(frozen=True, slots=True)
class FeedbackAccepted:
    """Feedback was stored; ``replaced`` when it replaced earlier feedback."""

    request: IndexedRequest
    replaced: bool


FeedbackResult = FeedbackAccepted | Literal["unknown", "unavailable"]
"""What :meth:`Telemetry.submit_feedback` did: stored it, or why not (unknown or
expired request id; shared index unreachable)."""


class Telemetry:
    """The gateway's telemetry sinks, their lifecycle, and feedback intake."""

    def __init__(
        self,
        settings: Settings,
        metrics: MetricsRecorder,
        state: SharedState,
        *,
        interaction_log: InteractionLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build the parts over ``state``'s window stats, request index and retry memory.

        ``interaction_log`` defaults to the one ``settings.database_url`` names.
        """
        stats = settings.stats
        self.metrics = metrics
        self.clock = clock
        store = state.windows
        self.index = state.requests
        memory = state.retries
        _count_drops(metrics, "request_index", self.index)
        _count_drops(metrics, "window_stats", store)
        _count_drops(metrics, "user_retries", memory)
        self.store = store
        self.log = interaction_log or open_log(settings.database_url, settings.telemetry)
        self.writer = InteractionLogWriter.from_settings(
            self.log, settings.telemetry, on_drop=metrics.dropped
        )
        writer = self.writer
        metrics.interaction_log_up.set_function(lambda: float(writer.up))
        metrics.interaction_spool_records.set_function(lambda: float(writer.spool.records))
        metrics.interaction_spool_bytes.set_function(lambda: float(writer.spool.size))
        self.recorder = WindowRecorder(
            store,
            stats,
            on_drop=lambda reason, n: metrics.telemetry_drop("window_stats", reason, n),
        )
        self.detector = UserRetryDetector(
            memory,
            self.recorder,
            stats,
            on_retry=self._on_retry,
            on_drop=lambda reason, n: metrics.telemetry_drop("user_retries", reason, n),
        )
        self._sinks = (self.detector, self.recorder, self.index, self.writer)
        self._bucket_seconds = store.layout.bucket_seconds
        self._shutdown_timeout = settings.telemetry.shutdown_timeout

    @property
    def sinks(self) -> Sequence[InteractionSink]:
        """The sinks in the order they must see a record.

        The retry detector comes first: it needs the messages, which the log
        writer strips under ``capture = metadata`` (on a copy, but first is
        also cheapest to reason about).
        """
        return self._sinks

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> Telemetry:
        """Start every background loop.

        The log is migrated by its writer: start-up waits a few seconds for
        that, but a database that is down does not keep the gateway from
        answering students (records are spooled until it is back).
        """
        await self.writer.started()
        self.recorder.start()
        self.index.start()
        self.detector.start()
        return self

    async def flush(self) -> None:
        """Push everything recorded so far to the stores now (tests, benchmarks).

        Same order as shut-down: detected retries reach the recorder and the
        writer before those flush.
        """
        await self.detector.flush(decide_all=True)
        await self.index.flush()
        await self.recorder.flush()
        await self.writer.flush()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Flush and stop, upstream parts first.

        The detector goes first because its last flush feeds the recorder and
        the writer; the writer last among the sinks because everything else
        may still hand it records; the log after its writer.
        """
        await self.detector.aclose()
        await self.index.aclose()
        await self.recorder.aclose()
        await self.store.aclose()
        await self.writer.aclose(self._shutdown_timeout)
        await self.log.aclose()

    # -- feedback ------------------------------------------------------------------
    async def submit_feedback(
        self,
        request_id: str,
        rating: int,
        tags: Sequence[str] = (),
        relevance: float | None = None,
        comment: str | None = None,
    ) -> FeedbackResult:
        """Join a rating to the request it rates and record it everywhere.

        The index swaps the stored feedback atomically and returns what it
        replaced, so window stats get ``-old +new`` and the log row is
        overwritten: a second rating replaces the first instead of counting twice.
        """
        tags = tuple(dict.fromkeys(tags))
        new = CountedFeedback(rating, tags, relevance)
        try:
            change = await self.index.set_feedback(request_id, new)
        except IndexUnavailableError as exc:
            log.warning("feedback for %s: request index unavailable: %s", request_id, exc)
            return "unavailable"
        if change is None:
            return "unknown"
        request, previous = change.request, change.previous
        self.recorder.record_feedback(request.window_key(self._bucket_seconds), previous, new)
        self.writer.record_feedback(
            LogFeedback(request_id, rating, list(tags), relevance, comment, self.clock())
        )
        old_tags = set(previous.tags) if previous is not None else set()
        first_rating = previous is None or previous.rating is None
        self.metrics.feedback(
            request.track,
            request.variant,
            request.subject,
            request.language,
            rating if first_rating else None,
            [t for t in tags if t not in old_tags],
        )
        return FeedbackAccepted(request, replaced=previous is not None)

    # -- user retries ------------------------------------------------------------------
    def _on_retry(self, retry: RetryFound) -> None:
        """A detected retry: count it and flag the request in the log."""
        self.metrics.user_retry(retry)
        self.writer.record_user_retry(retry.request_id)


def _count_drops(metrics: MetricsRecorder, sink: str, part: object) -> None:
    """Count what a bounded part of the state pushes out in ``tara_telemetry_dropped_total``.

    The parts that hold data in this process (memory state, the Redis request
    index's queue) have an ``on_drop`` attribute; the others keep nothing here.
    """
    if isinstance(part, _Bounded):
        part.on_drop = lambda reason, n: metrics.telemetry_drop(sink, reason, n)
