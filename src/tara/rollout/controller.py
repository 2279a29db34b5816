"""The rollout controller loop: read stats, call the pure ``step``, save, carry out the effects.

Every ``rollout.tick_interval`` the controller renews its leader lease; only
the leader acts. For each rollout it

1. when its analysis is due (its stage's interval since the last look),
   reads canary and stable stats *since the stage began*, calls
   :func:`tara.rollout.decide.step`, and hands the result to the rollout
   service, which saves it (check-and-set, fenced with the lease's token)
   and updates the routing table; then it carries out the step's effects.
   A read failure is not an exception here: it becomes the ``ERROR`` input
   of ``step``, which holds and eventually pauses but never rolls back;
2. claims the rollout's **outbox** — notices of decisions an operator made
   through the admin API, on whichever gateway replica — by saving the
   rollout without them (check-and-set, fenced), then carries them out: a
   notice is carried out once, by the leader that claimed it.

Carrying out is the one side-effect path: a
:class:`~tara.rollout.actions.Notify` is counted in
``tara_rollout_decisions_total`` and, when it has an event, posted to the
webhooks; an :class:`~tara.rollout.actions.Alert` is logged as ``ALERT``;
the rollout's gauges are set. (Routing actions were carried out by the
service when it saved.)

Losing leadership — the lease could not be renewed or ran out mid-tick
(``expired``), or a write was refused because a newer leader exists
(``fenced``) — is logged and counted in
``tara_controller_leadership_lost_total{reason}``, and the controller stops
acting at once. Each tenure starts by re-syncing the routing table, so a
leader that died between saving a rollout and publishing its weight is
repaired by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from tara.loops import poll
from tara.rollout.actions import Action, Alert, Notify
from tara.rollout.analysis import StatsInput
from tara.rollout.config import RolloutSettings
from tara.rollout.decide import step
from tara.rollout.decisions import DecisionName
from tara.rollout.lease import Lease
from tara.rollout.metric_source import MetricSource, stage_window_start
from tara.rollout.model import TERMINAL, Phase, Rollout
from tara.rollout.rollout_store import StaleLeaderError
from tara.rollout.service import RolloutService
from tara.rollout.webhooks import EventSink
from tara.telemetry.metrics import MetricsRecorder

log = logging.getLogger(__name__)

DECISION_LABELS = tuple(dict.fromkeys(d.metric_label for d in DecisionName))
"""Every ``decision`` label value, created at 0 so dashboards and alerts see them early."""

LostReason = Literal["expired", "fenced"]
"""Why a tenure ended: the lease ran out, or a write showed that a newer leader exists."""


class Companion(Protocol):
    """Work that rides along the controller's tick while it leads (the fine-tuning loop)."""

    async def tick(self, token: int | None) -> object:
        """One pass with the leader's fencing token (``None``: not leading, stop acting)."""
        ...

    async def aclose(self) -> None:
        """Stop its background work."""
        ...


@dataclass(slots=True)
class TickReport:
    """What one tick did (logged, shown by ``tara controller --once``, asserted by tests)."""

    leader: bool
    token: int | None = None
    active: int = 0
    """Rollouts still live after the tick."""
    analysed: int = 0
    decisions: list[tuple[str, DecisionName]] = field(default_factory=list)
    """``(rollout id, decision)`` of every decision carried out this tick (own or claimed)."""
    conflicts: int = 0
    """Saves that lost the check-and-set (an operator changed the rollout meanwhile)."""
    fenced: bool = False
    """Leadership was lost during the tick (a save was refused, or the lease ran out)."""
    errors: int = 0
    """Rollouts that could not be listed or saved."""


def analysis_due(rollout: Rollout, now: float) -> bool:
    """Whether ``rollout`` should be analysed now (pending: at once; live: every interval)."""
    if rollout.phase in TERMINAL:
        return False
    if rollout.phase is Phase.PENDING or rollout.last_decision is None:
        return True
    return now - rollout.last_decision.at >= rollout.stage.interval


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
        companions: Sequence[Companion] = (),
    ) -> None:
        self._service = service
        self._source = source
        self.lease = lease
        self._settings = settings
        self._metrics = metrics
        self._notifier = notifier
        self._clock = clock
        self.companions = tuple(companions)
        self._tenure: int | None = None
        """The fencing token of the tenure this controller believes it holds."""
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
            self._lost("expired", "the leader lease could not be renewed")
            # A standby that reached the lease store is as ready as it can be.
            self.last_tick = self._clock()
            await self._companions(None)
            return TickReport(leader=False)
        report = TickReport(leader=True, token=self.lease.token)
        if report.token != self._tenure:
            self._lost("expired", f"the lease was taken again as tenure {report.token}")
            await self._begin_tenure(report)
        await self._rollouts(report)
        # The fine-tuning loop acts on what this tick decided, with a token still valid.
        await self._companions(None if report.fenced else self.lease.token)
        if not report.errors:
            self.last_tick = self._clock()
        return report

    async def _rollouts(self, report: TickReport) -> None:
        try:
            rollouts = await self._service.list()
        except Exception as exc:  # the store is down: nothing to decide on
            log.error("controller: cannot list rollouts: %s", exc)
            report.errors += 1
            return
        for rollout in rollouts:
            current = rollout
            if analysis_due(current, self._clock()):
                current = await self._analyse(current, report)
            if current.outbox and not report.fenced:
                current = await self._save(current, replace(current, outbox=()), (), report)
            if report.fenced:
                break
            if current.phase not in TERMINAL:
                self._set_gauges(current)
            report.active += current.phase not in TERMINAL

    async def _companions(self, token: int | None) -> None:
        for companion in self.companions:
            try:
                await companion.tick(token)
            except Exception:  # one companion's bug must not stop the rollouts
                log.exception("controller: %s failed", type(companion).__name__)

    async def _begin_tenure(self, report: TickReport) -> None:
        """Remember the new tenure; repair the routing table its predecessor may have left."""
        self._tenure = report.token
        try:
            await self._service.sync_routing()
        except Exception as exc:  # the next tenure (or the next change) will try again
            log.error("controller: cannot sync the routing table: %s", exc)

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
        self, before: Rollout, after: Rollout, actions: Sequence[Action], report: TickReport
    ) -> Rollout:
        """Save ``before → after`` (fenced), then carry out ``actions`` and ``before``'s outbox
        if ``after`` no longer holds it. Returns what is stored now, as far as this tick knows.
        """
        token = self.lease.token
        if token is None:  # the lease ran out during this tick: leave it to the next leader
            self._lost("expired", "the leader lease ran out during a tick", report)
            return before
        try:
            saved = await self._service.apply(before, after, actions, fence=token)
        except StaleLeaderError as exc:
            self._lost("fenced", str(exc), report)
            return before
        except Exception as exc:  # store down: the next tick decides again
            log.error("controller: cannot save rollout %s: %s", before.id, exc)
            report.errors += 1
            return before
        if saved is None:
            # The stored rollout changed under us: an operator, or a newer leader?
            if not await self.lease.acquire() or self.lease.token != token:
                self._lost("fenced", f"the write of {before.id} lost to another controller", report)
            else:
                report.conflicts += 1
            return before
        claimed = before.outbox if not saved.outbox else ()
        self._carry_out(saved, [*claimed, *actions], report)
        return saved

    def _carry_out(self, rollout: Rollout, effects: Iterable[Action], report: TickReport) -> None:
        """The one side-effect path: count and announce notices, log alerts, set gauges."""
        for effect in effects:
            if isinstance(effect, Notify):
                decision = effect.decision.decision
                report.decisions.append((effect.rollout_id, decision))
                if self._metrics is not None:
                    label = decision.metric_label
                    self._metrics.rollout_decisions.labels(effect.track, label).inc()
                if effect.event is not None:
                    self._notifier.notify(effect.body())
            elif isinstance(effect, Alert):
                log.warning("ALERT %s", effect.message)
        self._set_gauges(rollout)

    def _set_gauges(self, rollout: Rollout) -> None:
        if self._metrics is None:
            return
        segment = rollout.segment.label
        self._metrics.rollout_canary_weight.labels(rollout.track, segment).set(
            rollout.weight_bp / 10_000
        )
        stage = rollout.stage_index
        if rollout.phase is Phase.SUCCEEDED:
            stage = len(rollout.plan.stages)  # the 100% stage after the partial ones
        self._metrics.rollout_stage.labels(rollout.track, segment).set(stage)

    def _lost(self, reason: LostReason, detail: str, report: TickReport | None = None) -> None:
        """Stop acting: log and count the end of the tenure (once per tenure)."""
        if report is not None:
            report.fenced = True
        tenure, self._tenure = self._tenure, None
        if tenure is None:
            return
        log.warning("controller: lost leadership of tenure %d (%s): %s", tenure, reason, detail)
        if self._metrics is not None:
            self._metrics.controller_leadership_lost.labels(reason).inc()

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
        for companion in self.companions:
            await companion.aclose()
        await self.lease.release()
        await self._notifier.aclose(max(0.0, deadline - time.monotonic()))
