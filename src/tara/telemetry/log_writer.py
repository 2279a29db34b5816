"""The background writer that keeps the interaction log off the request path.

:class:`InteractionLogWriter` is an :class:`~tara.telemetry.interactions.InteractionSink`:
``record`` only appends the interaction to a bounded in-memory buffer and
returns. One task writes the buffer in batches through an
:class:`~tara.telemetry.log.InteractionLog`: it sleeps until ``batch_size``
records wait or ``flush_interval`` has passed, then writes up to
``batch_size`` at a time. Records do not wake it one by one: an
``asyncio.Queue`` woke the writer (a future, a timeout, a task step) for
nearly every request, which cost more of the gateway's CPU than the writes.

A failed write is one of two things, and :meth:`InteractionLog.ping` tells
which:

* **a record the store refuses** (the store still answers): the batch is
  split in halves, recursively, until the refused record stands alone; it is
  tried ``max_attempts`` times and then dropped, and every other record of the
  batch is written.
* **an outage** (the store does not answer, or is not migrated yet, e.g.
  PostgreSQL down at start-up): the unwritten records, and every record after
  them, go to the :class:`~tara.telemetry.spool.Spool`, a bounded local
  file. The writer probes the store with exponential backoff (tenacity) and,
  once it answers, migrates it if needed and replays the spool in order
  before writing anything new, so ratings still follow the rows they update.

Every record that is finally not written is counted once, by reason:

``queue_full``        the in-memory queue was at its bound when the record arrived
``rejected``          the store refused it alone, while answering
``spool_full``        an outage, and the spool had no room for it
``spool_torn``        its spooled line was torn by a crash, or unreadable
``shutdown_timeout``  still in memory when ``aclose`` ran out of time and could not spool it
``closed``            recorded after ``aclose`` began
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from tara.telemetry.config import TelemetrySettings
from tara.telemetry.interactions import Capture, Interaction, OnDrop
from tara.telemetry.log import Feedback, InteractionLog, UserRetryMark
from tara.telemetry.spool import Entry, Item, Spool, SpoolUnavailableError

log = logging.getLogger(__name__)

PING_TIMEOUT = 10.0
"""Longest wait for the store to answer a ping before calling it an outage."""

STARTUP_WAIT = 5.0
"""Longest :meth:`InteractionLogWriter.started` waits for the first migration attempt."""


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


class StoreDownError(Exception):
    """The store does not take writes now (an outage, or not migrated yet)."""


@dataclass(slots=True)
class WriterStats:
    """What the writer has done so far (for logs, metrics and tests)."""

    written: int = 0
    """Interactions and feedback items stored (replayed ones included)."""
    batches: int = 0
    failed_attempts: int = 0
    """Writes the store failed (each half of a split batch counts)."""
    spooled: int = 0
    """Records appended to the spool during outages."""
    replayed: int = 0
    """Spooled records written after an outage."""
    outages: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class InteractionLogWriter:
    """Non-blocking sink that batches interactions and feedback into an interaction log."""

    def __init__(
        self,
        store: InteractionLog,
        *,
        capture: Capture = "full",
        queue_size: int = 5_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_attempts: int = 3,
        retry_initial_backoff: float = 0.1,
        retry_max_backoff: float = 5.0,
        spool: Spool | None = None,
        on_drop: OnDrop | LabelledCounter | None = None,
    ) -> None:
        self.store = store
        self.capture: Capture = capture
        self.stats = WriterStats()
        self.spool = spool if spool is not None else Spool(None, 0)
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_attempts = max_attempts
        self._backoff = (retry_initial_backoff, retry_max_backoff)
        self._on_drop = drop_reporter(on_drop)
        self._pending: deque[Item] = deque()
        self._wake = asyncio.Event()
        """Set when a batch is full, or a flush or close wants the writer now."""
        self._accepted = 0
        """Items ever buffered; with ``_settled``, what :meth:`flush` waits for."""
        self._settled = 0
        """Items written, spooled or dropped so far (in buffer order)."""
        self._batch: list[Item] = []
        self._batch_done = 0
        """How much of ``_batch`` is written or dropped (the rest is not yet)."""
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._migrated = False
        self._migrate_failed = False
        self._first_try = asyncio.Event()
        self.up = False
        """True while records go straight to the store (migrated, reachable, spool empty)."""

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
            spool=Spool(settings.spool_path, settings.spool_max_bytes),
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

    def record_user_retry(self, request_id: str) -> None:
        """Queue a user-retry flag for a request queued earlier (it is applied after it)."""
        if self.capture != "off":
            self._enqueue(UserRetryMark(request_id))

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
        if count <= 0:
            return
        self.stats.dropped[reason] += count
        try:
            self._on_drop(reason, count)
        except Exception:  # a broken metric must not break a request
            log.exception("interaction drop counter failed")

    @property
    def queued(self) -> int:
        """Records waiting in memory (not counting the batch being written)."""
        return len(self._pending)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start the background task (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tara-interaction-log-writer")

    async def started(self, timeout: float = STARTUP_WAIT) -> bool:  # noqa: ASYNC109
        """Wait (at most ``timeout`` s) for the first try at migrating the log; whether it is up.

        Start-up calls this so a reachable log is migrated before the gateway
        reports ready; an unreachable one only delays start-up by the timeout.
        """
        self.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._first_try.wait()
        return self.up

    async def flush(self) -> None:
        """Wait until everything queued so far is written, spooled or dropped (needs ``start``)."""
        if self._settled >= self._accepted:
            return
        done = asyncio.get_running_loop().create_future()
        self._flushes.append((self._accepted, done))
        self._wake.set()
        await done

    # The timeout is ours, not the caller's: on expiry we spool or count what is left.
    async def aclose(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop taking records, write (or spool) everything queued, end within ``timeout`` s.

        A spool keeps what is not written for the next start; what cannot even
        be spooled in time is counted as ``shutdown_timeout``.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self.start()
        assert self._task is not None
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await self._save_leftovers()
        elif not self._task.cancelled() and self._task.exception() is not None:
            log.error("interaction log writer had crashed", exc_info=self._task.exception())
            await self._save_leftovers()
        self.up = False
        await self.spool.aclose()

    async def _save_leftovers(self) -> None:
        """After the task is gone: spool what it left in memory, count what does not fit."""
        left = self._batch[self._batch_done :] + list(self._pending)
        self._batch, self._batch_done = [], 0
        self._pending.clear()
        if not left:
            return
        try:
            kept = await asyncio.wait_for(self.spool.append(left), timeout=5.0)
        except Exception:
            log.exception("interaction log: cannot spool %d records at shutdown", len(left))
            kept = 0
        if kept < len(left):
            log.error("interaction log writer: %d records unwritten at shutdown", len(left) - kept)
        self._drop("shutdown_timeout", len(left) - kept)

    # -- the background task ------------------------------------------------
    async def _run(self) -> None:
        await self._open_spool()
        ready = await self._schema_ready()
        self._first_try.set()
        if self.spool.records or not ready:
            await self._outage()
        pending = self._pending
        while True:
            if len(pending) < self._batch_size and not (self._closed or self._flushes):
                # Asleep until a batch is full, a flush or close asks, or the interval ends.
                await self._sleep(self._flush_interval)
            self._wake.clear()
            if pending:
                self._batch = [
                    pending.popleft() for _ in range(min(len(pending), self._batch_size))
                ]
                self._batch_done = 0
                await self._deliver(self._batch)
                self._settled += self._batch_done
                left, self._batch = self._batch[self._batch_done :], []
                if left:
                    # An outage: the rest of the batch goes back first, then to the spool.
                    pending.extendleft(reversed(left))
                    await self._outage()
            self._settle()
            if self._closed and not pending:
                return

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _settle(self) -> None:
        """Release the flushes whose records are all written, spooled or dropped."""
        waiting = []
        for target, done in self._flushes:
            if target > self._settled:
                waiting.append((target, done))
            elif not done.done():
                done.set_result(None)
        self._flushes = waiting

    # -- writing, and isolating a refused record ---------------------------
    async def _apply(self, items: Sequence[Item]) -> None:
        """One attempt at writing ``items``: interactions, then feedback, then user-retry flags."""
        interactions = [i for i in items if isinstance(i, Interaction)]
        if interactions:
            await self.store.write_batch(interactions)
        feedback = [i for i in items if isinstance(i, Feedback)]
        if feedback:
            await self.store.apply_feedback_batch(feedback)
        retries = [i.request_id for i in items if isinstance(i, UserRetryMark)]
        if retries:
            await self.store.mark_user_retries(retries)

    async def _reachable(self) -> bool:
        try:
            await asyncio.wait_for(self.store.ping(), PING_TIMEOUT)
        except Exception as exc:
            log.debug("interaction log ping failed: %r", exc)
            return False
        return True

    async def _deliver(self, batch: list[Item]) -> int:
        """Write ``batch``, splitting around refused records; stop at an outage.

        Returns how many records, from the start, are written or dropped as
        refused: the batch is handled in order, so everything after them is
        unwritten when an outage stops the delivery. The writer's own batch
        also keeps this count current in ``_batch_done``, for a shutdown
        that cancels the delivery half-way.
        """
        done = 0
        todo = [(0, len(batch))]  # ranges still to write; the next one is last
        while todo:
            lo, hi = todo.pop()
            try:
                await self._apply(batch[lo:hi])
            except Exception as exc:
                self.stats.failed_attempts += 1
                if not await self._reachable():
                    self._outage_noted(exc)
                    return done
                if hi - lo > 1:
                    mid = (lo + hi) // 2
                    todo += [(mid, hi), (lo, mid)]
                    continue
                if not await self._isolate(batch[lo], exc):
                    return done
            else:
                self.stats.written += hi - lo
                self.stats.batches += 1
            done = hi
            if batch is self._batch:
                self._batch_done = hi
        return done

    async def _isolate(self, item: Item, first: Exception) -> bool:
        """Try a lone record the store refused again; drop it if the store still refuses.

        It gets ``max_attempts`` tries in all, with backoff. ``False`` when
        the store turned out to be down after all (the record stays unwritten).
        """
        initial, cap = self._backoff
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts - 1),
            wait=wait_exponential(multiplier=initial, max=cap),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        )
        try:
            if self._max_attempts <= 1:
                raise first
            async for attempt in retrying:
                with attempt:
                    await self._apply([item])
        except Exception as exc:
            self.stats.failed_attempts += 1
            if not await self._reachable():
                self._outage_noted(exc)
                return False
            request_id = item.request_id
            log.error(
                "interaction log refused record %s (%s); the rest of its batch is written",
                request_id,
                type(exc).__name__,
            )
            self._drop("rejected", 1)
            return True
        self.stats.written += 1
        self.stats.batches += 1
        return True

    # -- outages: spool, probe, replay ------------------------------------------
    async def _open_spool(self) -> None:
        try:
            torn = await self.spool.open()
        except (SpoolUnavailableError, OSError) as exc:
            log.error("interaction log spool unusable, outages will drop records: %s", exc)
            self.spool = Spool(None, 0)
            return
        if torn:
            log.warning("interaction log spool: skipped a torn last record")
            self._drop("spool_torn", torn)
        if self.spool.records:
            log.warning(
                "interaction log spool %s holds %d records from before; replaying them first",
                self.spool.path,
                self.spool.records,
            )

    async def _schema_ready(self) -> bool:
        """Create or upgrade the schema once; ``False`` while the store is unreachable."""
        if self._migrated:
            return True
        try:
            await self.store.migrate()
        except Exception as exc:
            if not self._migrate_failed:
                log.error(
                    "interaction log not ready (%r); students are served and records are "
                    "spooled to %s until it is back",
                    exc,
                    self.spool.path,
                )
            self._migrate_failed = True
            return False
        if self._migrate_failed:
            log.warning("interaction log ready: schema migrated")
        self._migrated = True
        self.up = not self.spool.records
        return True

    def _outage_noted(self, exc: BaseException) -> None:
        if self.up:
            self.stats.outages += 1
            log.error(
                "interaction log unavailable (%r); spooling records to %s", exc, self.spool.path
            )
        self.up = False

    async def _outage(self) -> None:
        """Spool what arrives and probe the store with backoff until the spool is replayed.

        Returns with the store up and the spool empty, or once the writer is
        closing (what is left then stays in the spool for the next start).
        """
        self.up = False
        initial, cap = self._backoff
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=initial, max=cap) + wait_random(0, initial),
            retry=retry_if_exception_type(StoreDownError),
            stop=self._closing,
            sleep=self._spool_while_waiting,
            reraise=True,
        )
        try:
            await retrying(self._recover)
        except StoreDownError:  # closing during the outage: the spool keeps it all
            await self._spool_pending()
            return
        log.warning("interaction log is back: the spool is replayed, writing directly again")
        self.up = True

    def _closing(self, _state: RetryCallState) -> bool:
        return self._closed

    async def _spool_while_waiting(self, seconds: float) -> None:
        """tenacity's sleep between probes: keep moving new records to the spool meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            await self._spool_pending()
            left = deadline - loop.time()
            if left <= 0 or self._closed:
                return
            await self._sleep(min(left, self._flush_interval))
            self._wake.clear()

    async def _spool_pending(self) -> None:
        """Append everything in memory to the spool; count what does not fit."""
        if not self._pending:
            self._settle()
            return
        items = list(self._pending)
        self._pending.clear()
        try:
            kept = await self.spool.append(items)
        except OSError as exc:  # SpoolUnavailableError included
            log.error("interaction log spool: append failed: %s", exc)
            kept = 0
        self.stats.spooled += kept
        if kept < len(items):
            log.error(
                "interaction log spool full (%d bytes): dropping %d records",
                self.spool.max_bytes,
                len(items) - kept,
            )
        self._drop("spool_full", len(items) - kept)
        self._settled += len(items)
        self._settle()

    async def _recover(self) -> None:
        """One probe: migrate if needed, then replay the whole spool; raise if still down."""
        await self._spool_pending()
        if not await self._reachable() or not await self._schema_ready():
            raise StoreDownError
        self.up = False  # until the spool is replayed
        while True:
            entries = await self.spool.read(self._batch_size)
            if not entries:
                return
            items = [e.item for e in entries if e.item is not None]
            done = await self._deliver(items)
            consumed = _entries_through(entries, done)
            self._drop("spool_torn", sum(1 for e in entries[:consumed] if e.item is None))
            self.stats.replayed += done
            if consumed:
                await self.spool.commit(consumed, entries[consumed - 1].end)
            if done < len(items):
                raise StoreDownError
            await self._spool_pending()  # what arrived during the replay goes after it


def _entries_through(entries: Sequence[Entry], items_done: int) -> int:
    """How many spool entries are settled when the first ``items_done`` readable ones are.

    Unreadable entries (``item is None``) settle with the readable ones around
    them; those after the last settled readable one wait, unless all are settled.
    """
    seen = 0
    for i, entry in enumerate(entries):
        if entry.item is not None:
            if seen == items_done:
                return i
            seen += 1
    return len(entries)
