"""The background writer that keeps the interaction log off the request path.

:class:`InteractionLogWriter` is an :class:`~tara.telemetry.interactions.InteractionSink`:
``record`` only appends the interaction to a bounded in-memory buffer and
returns. One task writes the buffer in batches through an
:class:`~tara.telemetry.log.InteractionLog`: it sleeps until ``batch_size``
records wait or ``flush_interval`` has passed, then writes up to
``batch_size`` at a time. Records do not wake it one by one: an
``asyncio.Queue`` woke the writer (a future, a timeout, a task step) for
nearly every request, which cost more of the gateway's CPU than the writes.

When the store fails, the batch is retried with exponential backoff while new
records keep queueing up to ``queue_size``; past that they are dropped. Every
record that is finally not written is counted once, by reason:

``queue_full``        the queue was at its bound when the record arrived
``store_error``       its batch failed ``max_attempts`` times
``shutdown_timeout``  still queued or in flight when ``aclose`` ran out of time
``closed``            recorded after ``aclose`` began

Writing resumes by itself when the store is back: the next batch simply succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tara.telemetry.config import TelemetrySettings
from tara.telemetry.interactions import Capture, Interaction
from tara.telemetry.log import Feedback, InteractionLog

log = logging.getLogger(__name__)

OnDrop = Callable[[str, int], None]
"""Told ``(reason, count)`` for records that will never be written."""


class Incrementable(Protocol):
    """A counter child: something with ``inc``."""

    def inc(self, amount: float = ...) -> None: ...


class LabelledCounter(Protocol):
    """A Prometheus-style counter, e.g. ``tara_interactions_dropped_total{reason}``."""

    def labels(self, **labels: str) -> Incrementable:
        """The child counter for these label values."""
        ...


def drop_reporter(target: OnDrop | LabelledCounter | None) -> OnDrop:
    """Adapt a callable, a labelled counter or nothing to an :data:`OnDrop` callable."""
    if target is None:
        return lambda reason, count: None
    if hasattr(target, "labels"):
        counter: LabelledCounter = target
        return lambda reason, count: counter.labels(reason=reason).inc(count)
    call: OnDrop = target
    return call


def backoff(attempt: int, initial: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
    return float(min(cap, initial * 2 ** (attempt - 1)))


@dataclass(slots=True)
class WriterStats:
    """What the writer has done so far (for logs, readiness and tests)."""

    written: int = 0
    """Interactions and feedback items stored."""
    batches: int = 0
    failed_attempts: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


Item = Interaction | Feedback


class InteractionLogWriter:
    """Non-blocking sink that batches interactions and feedback into an interaction log."""

    def __init__(
        self,
        store: InteractionLog,
        *,
        capture: Capture = "full",
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_attempts: int = 8,
        retry_initial_backoff: float = 0.1,
        retry_max_backoff: float = 5.0,
        on_drop: OnDrop | LabelledCounter | None = None,
    ) -> None:
        self.store = store
        self.capture: Capture = capture
        self.stats = WriterStats()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_attempts = max_attempts
        self._backoff = (retry_initial_backoff, retry_max_backoff)
        self._on_drop = drop_reporter(on_drop)
        self._pending: deque[Item] = deque()
        self._batch: list[Item] = []
        self._wake = asyncio.Event()
        """Set when a batch is full, or a flush or close wants the writer now."""
        self._accepted = 0
        """Items ever buffered; with ``_settled``, what :meth:`flush` waits for."""
        self._settled = 0
        """Items written or dropped by the writer so far (in buffer order)."""
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        store: InteractionLog,
        settings: TelemetrySettings,
        on_drop: OnDrop | LabelledCounter | None = None,
    ) -> InteractionLogWriter:
        """A writer configured by the ``telemetry`` settings section."""
        return cls(
            store,
            capture=settings.capture,
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            max_attempts=settings.max_attempts,
            retry_initial_backoff=settings.retry_initial_backoff,
            retry_max_backoff=settings.retry_max_backoff,
            on_drop=on_drop,
        )

    # -- the request path: never blocks, never raises ------------------------
    def record(self, interaction: Interaction) -> None:
        """Queue one finished interaction (text stripped when capture is ``metadata``)."""
        if self.capture == "off":
            return
        if self.capture == "metadata" and (
            interaction.messages is not None or interaction.answer is not None
        ):
            interaction = dataclasses.replace(interaction, messages=None, answer=None)
        self._enqueue(interaction)

    def record_feedback(self, feedback: Feedback) -> None:
        """Queue feedback; it is applied after every interaction queued before it."""
        if self.capture == "off":
            return
        if self.capture == "metadata" and feedback.comment is not None:
            feedback = dataclasses.replace(feedback, comment=None)
        self._enqueue(feedback)

    def _enqueue(self, item: Item) -> None:
        pending = self._pending
        if self._closed:
            self._drop("closed", 1)
        elif len(pending) >= self._queue_size:
            self._drop("queue_full", 1)
        else:
            pending.append(item)
            self._accepted += 1
            if len(pending) == self._batch_size:
                self._wake.set()

    def _drop(self, reason: str, count: int) -> None:
        self.stats.dropped[reason] += count
        try:
            self._on_drop(reason, count)
        except Exception:  # a broken metric must not break a request
            log.exception("interaction drop counter failed")

    @property
    def queued(self) -> int:
        """Records waiting in the buffer (not counting the batch being written)."""
        return len(self._pending)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start the background task (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tara-interaction-log-writer")

    async def flush(self) -> None:
        """Wait until everything queued so far is written or dropped (needs ``start``)."""
        if self._settled >= self._accepted:
            return
        done = asyncio.get_running_loop().create_future()
        self._flushes.append((self._accepted, done))
        self._wake.set()
        await done

    # The timeout is ours, not the caller's: on expiry we count what is lost.
    async def aclose(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop taking records, write everything queued, and end within ``timeout`` seconds.

        What is still unwritten when time is up is counted as ``shutdown_timeout``.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self.start()
        assert self._task is not None
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if done:
            if not self._task.cancelled() and self._task.exception() is not None:
                log.error("interaction log writer had crashed", exc_info=self._task.exception())
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        lost = len(self._batch) + len(self._pending)
        self._batch.clear()
        self._pending.clear()
        if lost:
            log.error("interaction log writer: %d records unwritten at shutdown", lost)
            self._drop("shutdown_timeout", lost)

    # -- the background task ------------------------------------------------
    async def _run(self) -> None:
        pending = self._pending
        while True:
            if len(pending) < self._batch_size and not (self._closed or self._flushes):
                # Asleep until a batch is full, a flush or close asks, or the interval ends.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_interval):
                        await self._wake.wait()
            self._wake.clear()
            if not pending:
                self._settle()
                if self._closed:
                    return
                continue
            self._batch = [pending.popleft() for _ in range(min(len(pending), self._batch_size))]
            await self._deliver(self._batch)
            self._settled += len(self._batch)
            self._batch = []
            self._settle()

    def _settle(self) -> None:
        """Release the flushes whose records are all written or dropped."""
        waiting = []
        for target, done in self._flushes:
            if target > self._settled:
                waiting.append((target, done))
            elif not done.done():
                done.set_result(None)
        self._flushes = waiting

    async def _deliver(self, batch: list[Item]) -> None:
        interactions = [i for i in batch if isinstance(i, Interaction)]
        feedback = [i for i in batch if isinstance(i, Feedback)]
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self.store.write_batch(interactions)
                for fb in feedback:
                    await self.store.apply_feedback(
                        fb.request_id, fb.rating, fb.tags, fb.relevance, fb.comment, fb.rated_at
                    )
            except Exception as exc:
                self.stats.failed_attempts += 1
                if attempt == self._max_attempts:
                    log.error("interaction log: dropping %d records: %r", len(batch), exc)
                    self._drop("store_error", len(batch))
                    return
                delay = backoff(attempt, *self._backoff)
                log.warning("interaction log write failed (%r); retry in %.2fs", exc, delay)
                await asyncio.sleep(delay)
            else:
                self.stats.written += len(batch)
                self.stats.batches += 1
                return
