"""The loop in the controller: evaluate triggers, admit runs, drive each run a step at a time.

A :class:`Retrainer` rides along the rollout controller: on every tick the
leader calls :meth:`Retrainer.tick` with its fencing token, after judging
the rollouts. A tick never waits for slow work:

1. **Triggers**, every ``retrain.interval``: the rules are evaluated over
   the interaction log in a thread of its own; when that finishes, a later
   tick runs the pure :func:`~tara.retrain.admission.admit`, saves each new
   run (fenced, check-and-set on revision 0, so two controllers can never
   both start one) and the triggers' ledger.
2. **Runs**: for each open run, the result of its finished step (if any) is
   fed to the pure :func:`~tara.retrain.steps.advance_run`; the changed run
   is saved (fenced, check-and-set) *before* its effects start, so a
   controller killed anywhere leaves a run its successor can take on at the
   same step. Steps run as background tasks (:mod:`tara.retrain.executor`),
   one at a time per run.

Every firing and every change of a run's state is sent to the webhooks and
counted (``tara_trigger_fired_total``, ``tara_finetune_runs_total``); the
gauges ``tara_finetune_runs_open{state}`` and
``tara_finetune_run_state_age_seconds{state}`` say what is open and how long
the oldest run has waited in each state. A controller that stops leading
cancels its steps in flight: the next leader does them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tara.finetune.backend import TrainingBackend, open_backend
from tara.loops import run_in_thread
from tara.retrain.admission import Admission, Limits, admit, run_evidence, scope_of
from tara.retrain.executor import StepRunner
from tara.retrain.run import OPEN, Run, RunState
from tara.retrain.steps import (
    WORK,
    AbortRollout,
    Announce,
    CancelJob,
    Effect,
    Observation,
    advance_run,
)
from tara.retrain.stores import LedgerStore, RunStore
from tara.rollout.rollout_store import StaleLeaderError
from tara.rollout.service import RolloutService
from tara.rollout.webhooks import EventSink
from tara.settings import Settings
from tara.state import open_state
from tara.telemetry.metrics import MetricsRecorder
from tara.triggers.check import CheckReport, run_check
from tara.triggers.model import TriggerResult
from tara.triggers.state import TriggerState

log = logging.getLogger(__name__)

RETRY_CHECK_AFTER = 60.0
"""Seconds before a trigger evaluation that failed (log unreachable) is tried again, at most."""


@dataclass(slots=True)
class RetrainReport:
    """What one tick of the loop did (logged, asserted by tests)."""

    evaluated: bool = False
    """A trigger evaluation finished and was acted on this tick."""
    started: list[str] = field(default_factory=list)
    """Ids of the runs started."""
    changes: list[tuple[str, str]] = field(default_factory=list)
    """``(run id, new state)`` of each change of state."""
    conflicts: int = 0
    """Saves that lost the check-and-set (an operator changed the run meanwhile)."""
    fenced: bool = False
    errors: int = 0


def new_run_id() -> str:
    """A fresh run id: ``ft-`` and 12 hex digits."""
    return f"ft-{secrets.token_hex(6)}"


def run_event(run: Run, previous: RunState | None) -> dict[str, Any]:
    """The webhook body of a run's change of state."""
    step = run.steps[-1] if run.steps else None
    return {
        "event": "run_state_changed",
        "run_id": run.id,
        "track": run.track,
        "segment": run.segment.label,
        "state": run.state.value,
        "previous_state": None if previous is None else previous.value,
        "reason": run.reason,
        "at": run.updated_at,
        "actor": step.actor if step else "controller",
        "evidence": dict(step.evidence) if step else {},
        "fine_tuned_model": run.fine_tuned_model,
        "rollout_id": run.rollout_id,
    }


def firing_event(
    result: TriggerResult, admission: Admission, runs: dict[str, str]
) -> dict[str, Any]:
    """The webhook body of one firing: the rule's numbers and what came of it."""
    decision = admission.decision_for(result)
    if decision is None:
        outcome, reason, run_id = "alert", "this rule only alerts", None
    else:
        run_id = runs.get(decision.segment.label)
        outcome = "started" if run_id else "held"
        reason = decision.reason
    return {
        "event": "trigger_fired",
        **result.as_json(),
        "segment": None if decision is None else decision.segment.label,
        "outcome": outcome,
        "reason": reason,
        "run_id": run_id,
    }


async def evaluate_triggers(
    settings: Settings,
    now: float,
    stable_models: Mapping[str, str],
    triggers: TriggerState,
    metrics: MetricsRecorder | None,
) -> CheckReport:
    """Every rule over the log as of ``now``, on a loop of its own (a thread's).

    A week of interactions is a long read: it must not hold up the
    controller's loop, whose lease renewals cannot wait. So it opens its own
    connections: the shared window stats through a Redis client of its own,
    and without Redis the log alone (another thread must not touch this
    process's in-memory stores).
    """
    async with contextlib.aclosing(open_state(settings)) as state:
        windows = state.windows if state.shared else None
        return await run_check(
            settings,
            now=now,
            windows=windows,
            metrics=metrics,
            stable_models=stable_models,
            state=triggers,
        )


class Retrainer:
    """The controller's fine-tuning loop (module docstring); one per controller process."""

    def __init__(
        self,
        settings: Settings,
        runs: RunStore,
        ledger: LedgerStore,
        service: RolloutService,
        notifier: EventSink,
        metrics: MetricsRecorder | None = None,
        *,
        backend: Callable[[], TrainingBackend] | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_run_id,
    ) -> None:
        self._settings = settings
        self._service = service
        self._runs = runs
        self._ledger = ledger
        self._notifier = notifier
        self._metrics = metrics
        self._clock = clock
        self._new_id = new_id
        # The trigger evaluation, and a prepare or an evaluation per open run.
        self._threads = ThreadPoolExecutor(
            1 + settings.retrain.max_open_runs, thread_name_prefix="tara-retrain"
        )
        self.steps = StepRunner(
            settings, service, backend or (lambda: open_backend(settings)), self._threads
        )
        self._tasks: dict[str, asyncio.Task[Observation]] = {}
        """The step in flight per run id."""
        self._pending: dict[str, Observation] = {}
        """A finished step's result whose save lost a race: fed in again next tick."""
        self._stopping: set[asyncio.Task[None]] = set()
        self._evaluation: asyncio.Task[CheckReport] | None = None
        self._next_check: float | None = None
        self._tenure: int | None = None
        self.last_report: RetrainReport | None = None
        if metrics is not None:
            for state in RunState:
                metrics.finetune_runs.labels(state.value)
            self._gauges([], 0.0)

    async def tick(self, token: int | None) -> RetrainReport:
        """One pass while leading with ``token``; ``None`` (not leading) stops work in flight."""
        report = RetrainReport()
        if token is None:
            self._stand_down()
            return report
        if token != self._tenure:
            self._tenure, self._next_check = token, None
        now = self._clock()
        try:
            await self._triggers(token, now, report)
            await self._advance_runs(token, now, report)
        except StaleLeaderError as exc:
            log.warning("fine-tuning loop: fenced off, another controller leads: %s", exc)
            report.fenced = True
            self._stand_down()
        except Exception as exc:  # a store blip: the next tick tries again
            log.error("fine-tuning loop: %s: %s", type(exc).__name__, exc)
            report.errors += 1
        self.last_report = report
        return report

    # -- triggers -----------------------------------------------------------------------

    async def _triggers(self, token: int, now: float, report: RetrainReport) -> None:
        task = self._evaluation
        if task is not None:
            if not task.done():
                return
            self._evaluation = None
            try:
                check = task.result()
            except Exception as exc:  # the log is down: look again a little later
                log.error("fine-tuning loop: cannot evaluate the triggers: %s", exc)
                self._next_check = now + min(RETRY_CHECK_AFTER, self._interval)
                report.errors += 1
                return
            await self._admit(check, token, now, report)
            return
        if self._next_check is None:
            checked = (await self._ledger.load()).ledger.checked_at
            self._next_check = now if checked is None else checked + self._interval
        if now >= self._next_check:
            self._evaluation = asyncio.create_task(self._evaluate(now))

    @property
    def _interval(self) -> float:
        return self._settings.retrain.interval.total_seconds()

    async def _evaluate(self, now: float) -> CheckReport:
        triggers = (await self._ledger.load()).ledger.triggers
        stable = await self._service.current_stable_models()
        settings, metrics = self._settings, self._metrics
        return await run_in_thread(
            lambda: evaluate_triggers(settings, now, stable, triggers, metrics), self._threads
        )

    async def _admit(
        self, check: CheckReport, token: int, now: float, report: RetrainReport
    ) -> None:
        stored = await self._ledger.load()
        ledger = stored.ledger
        results = [v.result for v in check.verdicts]
        runs = await self._runs.list()
        retrain = self._settings.retrain
        admission = admit(results, runs, ledger.triggers, retrain, Limits.of(self._settings), now)
        started: dict[str, str] = {}
        for decision in admission.started:
            run = Run(
                self._new_id(),
                decision.track,
                decision.segment,
                created_at=now,
                data_since=decision.data_since,
                data_until=check.at,  # what the rules counted; a retried prepare reads the same
                triggers=tuple(run_evidence(f, check.period) for f in decision.firings),
            ).entered(RunState.PENDING, now, decision.reason, decision.as_json())
            if not await self._runs.save(run, 0, fence=token):
                continue  # the id is taken (never, in practice): the next look starts it
            for firing in decision.firings:  # "since its last run" starts where this one's ends
                ledger.triggers.record(firing.name, scope_of(decision.segment), check.at)
            started[decision.segment.label] = run.id
            report.started.append(run.id)
            self._announce(run, None)
        ledger.checked_at = now
        ledger.decisions = [
            {**d.as_json(), "run_id": started.get(d.segment.label)} for d in admission.decisions
        ]
        if not await self._ledger.save(ledger, stored.revision, fence=token):
            log.warning("fine-tuning loop: the trigger ledger changed meanwhile; not saved")
        self._next_check = now + self._interval
        report.evaluated = True
        for result in results:
            if result.fired:
                self._notifier.notify(firing_event(result, admission, started))
        if admission.decisions or admission.alerts:
            log.info(
                "fine-tuning loop: %s",
                "; ".join(
                    [f"{d.segment.label}: {d.reason}" for d in admission.decisions]
                    + [f"{r.name} ({r.scope.key}) alerts" for r in admission.alerts]
                ),
            )

    # -- runs ---------------------------------------------------------------------------

    async def _advance_runs(self, token: int, now: float, report: RetrainReport) -> None:
        runs = await self._runs.list()
        for run in runs:
            if run.open:
                await self._advance(run.id, token, now, report)
        for run_id in [i for i in self._tasks if i not in {r.id for r in runs if r.open}]:
            self._tasks.pop(run_id).cancel()  # its run ended (or vanished) meanwhile
        self._gauges(await self._runs.list(), now)

    async def _advance(self, run_id: str, token: int, now: float, report: RetrainReport) -> None:
        stored = await self._runs.load(run_id)
        if stored is None:
            return
        run = stored.run
        observation = self._pending.pop(run_id, None)
        task = self._tasks.get(run_id)
        if task is not None:
            if not task.done() and run.cancel_requested_by is None:
                return
            del self._tasks[run_id]
            if task.done() and not task.cancelled():
                observation = task.result()
            else:
                task.cancel()
        after, effects = advance_run(run, observation, self._settings.retrain, now)
        if after is not run and not await self._runs.save(after, stored.revision, fence=token):
            if observation is not None:
                self._pending[run_id] = observation
            report.conflicts += 1
            return
        if after.state is not run.state:
            report.changes.append((run_id, after.state.value))
        for effect in effects:
            self._carry_out(effect)

    def _carry_out(self, effect: Effect) -> None:
        if isinstance(effect, Announce):
            self._announce(effect.run, effect.previous)
        elif isinstance(effect, CancelJob | AbortRollout):
            stopping = asyncio.create_task(self.steps.stop(effect))
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)
        elif isinstance(effect, WORK) and effect.run_id not in self._tasks:
            self._tasks[effect.run_id] = asyncio.create_task(self.steps.perform(effect))

    def _announce(self, run: Run, previous: RunState | None) -> None:
        self._notifier.notify(run_event(run, previous))
        if self._metrics is not None:
            self._metrics.finetune_runs.labels(run.state.value).inc()
        log.info("fine-tuning run %s (%s) %s: %s", run.id, run.segment.label, run.state, run.reason)

    def _gauges(self, runs: Iterable[Run], now: float) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        for state in sorted(OPEN):
            in_state = [r for r in runs if r.state is state]
            metrics.finetune_runs_open.labels(state.value).set(len(in_state))
            oldest = min((r.state_since for r in in_state), default=None)
            age = 0.0 if oldest is None else max(0.0, now - oldest)
            metrics.finetune_run_state_age.labels(state.value).set(age)

    # -- stopping -----------------------------------------------------------------------

    def _stand_down(self) -> None:
        """Not leading (any more): cancel the work in flight; the leader does it again."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._pending.clear()
        if self._evaluation is not None:
            self._evaluation.cancel()
            self._evaluation = None
        self._tenure = None
        self._gauges([], 0.0)  # the leader reports the runs; a stale copy here would mislead

    async def aclose(self) -> None:
        """Cancel the work in flight, wait for it to stop, close the backend and threads."""
        tasks: list[asyncio.Task[Any]] = [*self._tasks.values(), *self._stopping]
        if self._evaluation is not None:
            tasks.append(self._evaluation)
        self._stand_down()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.steps.aclose()
        self._threads.shutdown(wait=False, cancel_futures=True)
