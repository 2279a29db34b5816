"""What operators do to runs and see of them: approve, cancel, list, and the loop's overview.

Approving and cancelling only *ask*: they set a field of the run with
check-and-set (reloading on a lost race with the controller's tick), and
the controller's next tick acts on it (starts the canary; stops the job or
the canary and marks the run ``cancelled``). :func:`summary` and
:func:`overview` are the JSON views the admin API, ``tara finetune runs``
and ``tara triggers check`` show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tara.retrain.admission import Limits, admit, last_activity
from tara.retrain.run import Run
from tara.retrain.steps import approve, request_cancel
from tara.retrain.stores import Ledger, RunStore
from tara.rollout.routing import Segment
from tara.settings import Settings
from tara.triggers.model import TriggerResult

MAX_ATTEMPTS = 20


class RunNotFound(Exception):  # noqa: N818 - the public name, like RolloutNotFound
    """No run has this id."""


class RunConflict(Exception):  # noqa: N818 - the public name, like RolloutConflict
    """The run kept changing while it was being updated."""


async def change_run(store: RunStore, run_id: str, change: Callable[[Run], Run]) -> Run:
    """Load, change, check-and-set (reloading on a lost race); the run as saved.

    Raises :class:`RunNotFound`, :class:`RunConflict`, or what ``change`` raises
    (``ValueError`` for a change the run's state does not allow).
    """
    for _ in range(MAX_ATTEMPTS):
        stored = await store.load(run_id)
        if stored is None:
            raise RunNotFound(f"no fine-tuning run with id {run_id!r}")
        after = change(stored.run)
        if after is stored.run or await store.save(after, stored.revision):
            return after
    msg = f"run {run_id} kept changing while it was being updated; try again"
    raise RunConflict(msg)


async def approve_run(store: RunStore, run_id: str, actor: str, now: float) -> Run:
    """Let an evaluated run's model go to its canary (the controller starts it next tick)."""
    return await change_run(store, run_id, lambda run: approve(run, actor, now))


async def cancel_run(store: RunStore, run_id: str, actor: str, reason: str, now: float) -> Run:
    """Ask the controller to stop a run (its job or canary too) and mark it cancelled."""
    return await change_run(store, run_id, lambda run: request_cancel(run, actor, reason, now))


def summary(run: Run, now: float) -> dict[str, Any]:
    """One run in a line: what ``tara finetune runs`` and ``GET /admin/finetune/runs`` list."""
    return {
        "id": run.id,
        "track": run.track,
        "segment": run.segment.label,
        "state": run.state.value,
        "open": run.open,
        "created_at": run.created_at,
        "state_since": run.state_since,
        "in_state_seconds": round(max(0.0, now - run.state_since), 1),
        "triggers": [str(t.get("trigger")) for t in run.triggers],
        "fine_tuned_model": run.fine_tuned_model,
        "rollout_id": run.rollout_id,
        "waiting_for_approval": run.state.value == "evaluated" and run.approved_by is None,
        "cancel_requested_by": run.cancel_requested_by,
        "reason": run.reason,
    }


def segments_of(runs: Iterable[Run], ledger: Ledger) -> list[str]:
    """Every segment label the runs or the ledger's last look mention, sorted."""
    labels = {r.segment.label for r in runs}
    labels |= {str(d["segment"]) for d in ledger.decisions if "segment" in d}
    return sorted(labels)


def overview(
    ledger: Ledger, runs: Sequence[Run], cooldown: float, interval: float, now: float
) -> dict[str, Any]:
    """The loop at a glance: the last look, open runs, and each segment's cooldown."""
    cooldowns = []
    for label in segments_of(runs, ledger):
        mine = [r for r in runs if r.segment.label == label]
        last = last_activity(Segment.parse(label), runs, ledger.triggers)
        until = None if last is None else last + cooldown
        cooldowns.append(
            {
                "segment": label,
                "last_run": mine[-1].id if mine else None,
                "last_activity_at": last,
                "cooldown_until": until,
                "cooling_down": until is not None and now < until,
            }
        )
    checked = ledger.checked_at
    return {
        "checked_at": checked,
        "next_check_at": None if checked is None else checked + interval,
        "decisions": [dict(d) for d in ledger.decisions],
        "open_runs": [summary(r, now) for r in runs if r.open],
        "segments": cooldowns,
    }


def loop_view(
    settings: Settings,
    results: Sequence[TriggerResult],
    ledger: Ledger,
    runs: Sequence[Run],
    now: float,
) -> dict[str, Any]:
    """:func:`overview` plus what the controller would decide on ``results`` now."""
    retrain, limits = settings.retrain, Limits.of(settings)
    admission = admit(results, runs, ledger.triggers, retrain, limits, now)
    view = overview(ledger, runs, limits.cooldown, retrain.interval.total_seconds(), now)
    view["enabled"] = retrain.enabled
    view["would"] = [d.as_json() for d in admission.decisions]
    view["alert_only"] = sorted({r.name for r in admission.alerts})
    return view
