"""The rollout controller loop: read stats, call the pure ``step``, write, record, notify.

Every ``rollout.tick_interval`` the controller renews its leader lease; only
the leader acts. For each live rollout whose analysis is due (its stage's
interval since the last look) it reads canary and stable stats *since the
stage began*, calls :func:`tara.rollout.decide.step`, and hands the result to
the rollout service, which saves it (check-and-set on the record, fenced with
the lease's token) and updates the routing table. A read failure is not an
exception here: it becomes the ``ERROR`` input of ``step``, which holds and
eventually pauses but never rolls back.

After a successful save the controller turns every new decision in the
rollout's history into the ``tara_rollout_*`` metrics and a webhook event.
Reading decisions from the history (rather than only its own actions) also
reports an operator's ``pause`` or ``rollback`` made through the admin API.
Each tenure starts by re-syncing the routing table, so a leader that died
between saving a rollout and publishing its weight is repaired by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tara.loops import poll
from tara.rollout.actions import Action, Alert
from tara.rollout.analysis import StatsInput
from tara.rollout.config import RolloutSettings
from tara.rollout.decide import step
from tara.rollout.metric_source import MetricSource, stage_window_start
from tara.rollout.model import TERMINAL, Decision, DecisionName, Phase, Rollout
from tara.rollout.rollout_store import StaleLeaderError
from tara.rollout.webhooks import EventSink
from tara.telemetry.metrics import MetricsRecorder

log = logging.getLogger(__name__)

DECISION_LABELS = tuple(dict.fromkeys(d.metric_label for d in DecisionName))
"""Every ``decision`` label value, created at 0 so dashboards and alerts see them early."""


class RolloutService(Protocol):
    """What the controller needs of :class:`tara.rollout.service.RolloutService`."""

    async def list(self, track: str | None = None, *, active_only: bool = False) -> list[Rollout]:
        """Every rollout (or the live ones)."""
        ...

    async def apply(
        self,
        before: Rollout,
        after: Rollout,
        actions: Sequence[Action],
        *,
        fence: int | None = None,
    ) -> Rollout | None:
        """Persist a step's result and carry out its routing actions; ``None`` if it lost."""
        ...

    async def sync_routing(self) -> None:
        """Make the routing table match the stored rollouts."""
        ...


class Lease(Protocol):
    """The controller's view of :class:`tara.rollout.lease.Lease`."""

    @property
    def token(self) -> int | None:
        """The tenure's fencing token, ``None`` when not leading."""
        ...

    async def acquire(self) -> bool:
        """Become or stay leader."""
        ...

    async def release(self) -> None:
        """Stop leading."""
        ...


@dataclass(slots=True)
class TickReport:
    """What one tick did (logged, shown by ``tara controller --once``, asserted by tests)."""

    leader: bool
    token: int | None = None
    active: int = 0
    """Rollouts still live after the tick."""
    analysed: int = 0
    decisions: list[tuple[str, str]] = field(default_factory=list)
    """``(rollout id, decision)`` of every decision observed this tick."""
    conflicts: int = 0
    """Saves that lost the check-and-set (an operator changed the rollout meanwhile)."""
    fenced: bool = False
    """A save was refused because another controller leads now."""
    errors: int = 0
    """Rollouts that could not be listed or saved."""


def analysis_due(rollout: Rollout, now: float) -> bool:
    """Whether ``rollout`` should be analysed now (pending: at once; live: every interval)."""
    if rollout.phase in TERMINAL:
        return False
    if rollout.phase is Phase.PENDING or rollout.last_decision is None:
        return True
    return now - rollout.last_decision.at >= rollout.stage.interval


def event_body(rollout: Rollout, decision: Decision) -> dict[str, Any]:
    """The JSON a webhook receives for one decision."""
    event = decision.decision.event
    assert event is not None, f"{decision.decision} is not announced"
    return {
        "event": event,
        "rollout_id": rollout.id,
        "track": rollout.track,
        "segment": rollout.segment.label,
        "stable_model": rollout.stable_model,
        "candidate_model": rollout.candidate_model,
        "phase": rollout.phase.value,
        "stage": rollout.stage_index + 1,
        "stages": len(rollout.plan.stages),
        "canary_weight": rollout.weight_bp / 10_000,
        **decision.to_dict(),
    }


DecisionId = tuple[float, str, str, str]


def _identity(decision: Decision) -> DecisionId:
    return (decision.at, decision.decision, decision.actor, decision.reason)


def _after(history: Sequence[Decision], seen: DecisionId | None) -> Sequence[Decision]:
    """The decisions of ``history`` that come after ``seen`` (all of them if ``seen`` is None)."""
    if seen is None:
        return history
    for i in range(len(history) - 1, -1, -1):
        if _identity(history[i]) == seen:
            return history[i + 1 :]
    # ``seen`` fell out of the capped history: everything since its time is new.
    return [d for d in history if d.at > seen[0]]


class Controller:
    """Runs rollouts: one :meth:`tick` per interval while holding the leader lease."""

    def __init__(
        self,
        service: RolloutService,
        source: MetricSource,
        lease: Lease,
        settings: RolloutSettings,
        metrics: MetricsRecorder | None,
        notifier: EventSink,
        *,
        clock: Callable[[], float] = time.time,
        tracks: Iterable[str] = (),
    ) -> None:
        self._service = service
        self._source = source
        self.lease = lease
        self._settings = settings
        self._metrics = metrics
        self._notifier = notifier
        self._clock = clock
        self._tenure: int | None = None
        self._seen: dict[str, DecisionId | None] = {}
        """Per rollout, the newest decision already reported in this tenure."""
        self._tenure_started = -math.inf
        self._inflight: asyncio.Future[TickReport] | None = None
        self.last_tick: float | None = None
        """Clock time the last tick finished without a store error (a standby's too)."""
        self.last_attempt: float | None = None
        """Clock time the last tick finished, errors or not (the loop is alive)."""
        self.last_report: TickReport | None = None
        if metrics is not None:
            for track in tracks:
                for label in DECISION_LABELS:
                    metrics.rollout_decisions.labels(track, label)

    async def tick(self) -> TickReport:
        """One pass over every rollout, if this controller leads."""
        if not await self.lease.acquire():
            self._tenure = None
            # A standby that reached the lease store is as ready as it can be.
            self.last_tick = self._clock()
            return TickReport(leader=False)
        report = TickReport(leader=True, token=self.lease.token)
        if report.token != self._tenure:
            await self._begin_tenure(report)
        try:
            rollouts = await self._service.list()
        except Exception as exc:  # the store is down: nothing to decide on
            log.error("controller: cannot list rollouts: %s", exc)
            report.errors += 1
            return report
        for rollout in rollouts:
            self._remember(rollout)
            if analysis_due(rollout, self._clock()):
                current = await self._analyse(rollout, report)
                if report.fenced:
                    break
            else:
                current = rollout
            self._observe(current, report)
            report.active += current.phase not in TERMINAL
        if not report.errors:
            self.last_tick = self._clock()
        return report

    async def _begin_tenure(self, report: TickReport) -> None:
        """Forget what the last tenure reported (another leader may have since); repair routing."""
        self._tenure = report.token
        self._seen.clear()
        self._tenure_started = self._clock()
        try:
            await self._service.sync_routing()
        except Exception as exc:  # the next tenure (or the next change) will try again
            log.error("controller: cannot sync the routing table: %s", exc)

    def _remember(self, rollout: Rollout) -> None:
        """First sight in a tenure: report only decisions newer than what is there now."""
        if rollout.id in self._seen:
            return
        if rollout.created_at >= self._tenure_started or not rollout.history:
            self._seen[rollout.id] = None
        else:
            self._seen[rollout.id] = _identity(rollout.history[-1])

    async def _analyse(self, rollout: Rollout, report: TickReport) -> Rollout:
        now = self._clock()
        canary: StatsInput
        stable: StatsInput
        if rollout.phase is Phase.PENDING:
            canary = stable = None
        else:
            try:
                canary, stable = await self._source.read(rollout, stage_window_start(rollout), now)
            except Exception as exc:  # errors are data: step holds, never rolls back
                log.warning("controller: cannot read stats of %s: %s", rollout.id, exc)
                canary = stable = exc
        after, actions = step(rollout, canary, stable, self._settings, now)
        report.analysed += 1
        if after is rollout:
            return rollout
        return await self._save(rollout, after, actions, report)

    async def _save(
        self, before: Rollout, after: Rollout, actions: list[Action], report: TickReport
    ) -> Rollout:
        token = self.lease.token
        if token is None:  # the lease ran out during this tick: leave it to the next leader
            report.fenced = True
            return before
        try:
            saved = await self._service.apply(before, after, actions, fence=token)
        except StaleLeaderError as exc:
            log.warning("controller: fenced off, another controller leads: %s", exc)
            report.fenced = True
            return before
        except Exception as exc:  # store down: the next tick decides again
            log.error("controller: cannot save rollout %s: %s", before.id, exc)
            report.errors += 1
            return before
        if saved is None:
            # Lost the check-and-set, or the fence refused the write: which one matters,
            # because a fenced controller must stop acting at once.
            if not await self.lease.acquire() or self.lease.token != token:
                log.warning("controller: write of %s refused, no longer the leader", before.id)
                report.fenced = True
            else:
                report.conflicts += 1
            return before
        for action in actions:
            if isinstance(action, Alert):
                log.warning("ALERT %s", action.message)
        last = saved.last_decision
        if last is not None and last.decision is DecisionName.HOLD:  # holds stay out of history
            self._count(saved, DecisionName.HOLD, report)
        return saved

    def _observe(self, rollout: Rollout, report: TickReport) -> None:
        """Report decisions not yet reported and set the rollout's gauges."""
        fresh = _after(rollout.history, self._seen.get(rollout.id))
        if fresh:
            self._seen[rollout.id] = _identity(fresh[-1])
        for decision in fresh:
            self._count(rollout, decision.decision, report)
            if decision.decision.event is not None:
                self._notifier.notify(event_body(rollout, decision))
        if self._metrics is not None and (fresh or rollout.phase not in TERMINAL):
            segment = rollout.segment.label
            self._metrics.rollout_canary_weight.labels(rollout.track, segment).set(
                rollout.weight_bp / 10_000
            )
            stage = rollout.stage_index
            if rollout.phase is Phase.SUCCEEDED:
                stage = len(rollout.plan.stages)  # the 100% stage after the partial ones
            self._metrics.rollout_stage.labels(rollout.track, segment).set(stage)

    def _count(self, rollout: Rollout, decision: DecisionName, report: TickReport) -> None:
        report.decisions.append((rollout.id, decision))
        if self._metrics is not None:
            self._metrics.rollout_decisions.labels(rollout.track, decision.metric_label).inc()

    async def run(self, *, once: bool = False, burst: bool = False) -> None:
        """Tick every ``tick_interval``: once, until no rollout is live (``burst``), or forever.

        A failing tick is logged and the loop goes on. A tick in progress is
        shielded from cancellation; :meth:`shutdown` decides how long it may finish.
        """
        interval = self._settings.tick_interval.total_seconds()
        async for _ in poll(interval, once=once):
            self._inflight = asyncio.ensure_future(self._tick_logged())
            report = await asyncio.shield(self._inflight)
            if burst and report.leader and not report.errors and report.active == 0:
                return

    async def _tick_logged(self) -> TickReport:
        try:
            report = await self.tick()
        except Exception:  # the loop must survive a bug in one tick
            log.exception("controller: tick failed")
            report = TickReport(leader=self.lease.token is not None, errors=1)
        self.last_report = report
        self.last_attempt = self._clock()
        if report.decisions:
            log.info("controller: %s", ", ".join(f"{r} {d}" for r, d in report.decisions))
        return report

    async def shutdown(self, runner: asyncio.Task[None] | None, timeout: float) -> None:  # noqa: ASYNC109
        """Stop ``runner`` (the :meth:`run` task), let a running tick finish, step down.

        The running tick gets ``timeout`` seconds, then is cancelled; the lease
        is released so a standby takes over at once; pending webhooks get what
        is left of the timeout.
        """
        deadline = time.monotonic() + timeout
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            try:
                await asyncio.wait_for(asyncio.shield(inflight), timeout)
            except TimeoutError:
                log.warning("controller: tick still running after %.1fs, cancelled", timeout)
                inflight.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await inflight
        await self.lease.release()
        await self._notifier.aclose(max(0.0, deadline - time.monotonic()))
