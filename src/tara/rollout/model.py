"""A rollout's state, its JSON form, and the manual transitions an operator may make.

A :class:`Rollout` is immutable: every transition returns a new one plus the
actions to carry out, so the admin API and the controller share one set of
rules. Time is epoch seconds (a virtual clock in the simulator). The time a
stage has run is ``stage_elapsed_before`` plus the time since
``stage_started_at`` while progressing, so a pause, a resume or a controller
restart continues with the time the stage had left.

Every decision comes with a :class:`~tara.rollout.actions.Notify` that
announces it. The controller carries out its own at once; an operator's
transition (made by the admin API, wherever it runs) is saved with its
notices in the rollout's :attr:`~Rollout.outbox`, which the leading
controller empties and carries out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tara.rollout.actions import Action, Notify, PromoteToStable, Rollback, SetWeight
from tara.rollout.bucketing import BUCKETS
from tara.rollout.decisions import Decision, DecisionName
from tara.rollout.plan import Plan, Stage
from tara.rollout.routing import Segment

HISTORY_LIMIT = 200
"""Decisions kept per rollout (the oldest are dropped first)."""


class Phase(enum.StrEnum):
    """Where a rollout is in its life."""

    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED})
"""Phases a rollout never leaves."""
RUNNING = frozenset({Phase.PROGRESSING, Phase.PAUSED})
"""Phases in which the canary serves its stage's share of students."""


class TransitionError(Exception):
    """An operation that the rollout's phase does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class Rollout:
    """A candidate model's way from canary to stable on one track segment."""

    id: str
    track: str
    segment: Segment
    stable_model: str
    candidate_model: str
    salt: str
    plan: Plan
    phase: Phase = Phase.PENDING
    stage_index: int = 0
    stage_started_at: float | None = None
    stage_elapsed_before: float = 0.0
    """Seconds the current stage ran before its latest (re)start."""
    created_at: float = 0.0
    updated_at: float = 0.0
    consecutive_errors: int = 0
    stall_alerted: bool = False
    history: tuple[Decision, ...] = ()
    last_decision: Decision | None = None
    outbox: tuple[Notify, ...] = ()
    """Notices of operator decisions the controller has not carried out yet."""

    @property
    def stage(self) -> Stage:
        """The current stage of the plan."""
        return self.plan.stages[self.stage_index]

    @property
    def weight_bp(self) -> int:
        """Canary weight the routing table should hold now."""
        if self.phase is Phase.SUCCEEDED:
            return BUCKETS
        if self.phase in RUNNING:
            return self.stage.weight_bp
        return 0

    def stage_elapsed(self, now: float) -> float:
        """Seconds spent in the current stage, pauses excluded."""
        running = 0.0
        if self.phase is Phase.PROGRESSING and self.stage_started_at is not None:
            running = max(0.0, now - self.stage_started_at)
        return self.stage_elapsed_before + running

    def decided(self, decision: Decision, *, record: bool = True, **changes: Any) -> Rollout:
        """A copy with ``changes`` applied and ``decision`` made the latest (and recorded)."""
        history = (*self.history, decision)[-HISTORY_LIMIT:] if record else self.history
        return replace(
            self, **changes, updated_at=decision.at, history=history, last_decision=decision
        )

    def with_notices(self, actions: Iterable[Action]) -> Rollout:
        """A copy whose outbox also holds the notices among ``actions`` (for the controller)."""
        notices = tuple(a for a in actions if isinstance(a, Notify))
        return replace(self, outbox=(*self.outbox, *notices)) if notices else self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the one the state store keeps."""
        return {
            "id": self.id,
            "track": self.track,
            "segment": self.segment.label,
            "stable_model": self.stable_model,
            "candidate_model": self.candidate_model,
            "salt": self.salt,
            "plan": self.plan.to_dict(),
            "phase": self.phase.value,
            "stage_index": self.stage_index,
            "stage_started_at": self.stage_started_at,
            "stage_elapsed_before": self.stage_elapsed_before,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "consecutive_errors": self.consecutive_errors,
            "stall_alerted": self.stall_alerted,
            "history": [d.to_dict() for d in self.history],
            "last_decision": self.last_decision.to_dict() if self.last_decision else None,
            "outbox": [n.to_dict() for n in self.outbox],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rollout:
        """Inverse of :meth:`to_dict`; raises ``KeyError``/``ValueError``/``TypeError``."""
        started = data.get("stage_started_at")
        last = data.get("last_decision")
        return cls(
            id=str(data["id"]),
            track=str(data["track"]),
            segment=Segment.parse(str(data["segment"])),
            stable_model=str(data["stable_model"]),
            candidate_model=str(data["candidate_model"]),
            salt=str(data["salt"]),
            plan=Plan.from_dict(data["plan"]),
            phase=Phase(data["phase"]),
            stage_index=int(data["stage_index"]),
            stage_started_at=None if started is None else float(started),
            stage_elapsed_before=float(data.get("stage_elapsed_before", 0.0)),
            created_at=float(data.get("created_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
            consecutive_errors=int(data.get("consecutive_errors", 0)),
            stall_alerted=bool(data.get("stall_alerted", False)),
            history=tuple(Decision.from_dict(d) for d in data.get("history", ())),
            last_decision=None if last is None else Decision.from_dict(last),
            outbox=tuple(Notify.from_dict(n) for n in data.get("outbox", ())),
        )


Transition = tuple[Rollout, list[Action]]


def flags(rollout: Rollout) -> list[str]:
    """Why the rollout is flagged (the reasons of its ``flag`` decisions), oldest first."""
    return [d.reason for d in rollout.history if d.decision is DecisionName.FLAG]


def announce(rollout: Rollout, decision: Decision) -> Notify:
    """The notice of ``decision``, with ``rollout`` as the decision left it."""
    return Notify(
        rollout.id,
        rollout.track,
        decision,
        {
            "segment": rollout.segment.label,
            "stable_model": rollout.stable_model,
            "candidate_model": rollout.candidate_model,
            "phase": rollout.phase.value,
            "stage": rollout.stage_index + 1,
            "stages": len(rollout.plan.stages),
            "canary_weight": rollout.weight_bp / BUCKETS,
        },
    )


def transition(
    rollout: Rollout, decision: Decision, *, record: bool = True, **changes: Any
) -> Transition:
    """:meth:`Rollout.decided` plus the notice announcing the decision."""
    new = rollout.decided(decision, record=record, **changes)
    return new, [announce(new, decision)]


def _refuse(rollout: Rollout, verb: str, allowed: frozenset[Phase]) -> None:
    if rollout.phase not in allowed:
        msg = f"cannot {verb}: rollout {rollout.id} is {rollout.phase.value}"
        raise TransitionError(msg)


def start(rollout: Rollout, now: float, actor: str = "controller") -> Transition:
    """Begin the first stage."""
    _refuse(rollout, "start", frozenset({Phase.PENDING}))
    weight = rollout.plan.stages[0].weight_bp
    decision = Decision(now, DecisionName.START, f"stage 1 at {weight / 100:g}%", {}, actor)
    new = rollout.decided(
        decision, phase=Phase.PROGRESSING, stage_index=0, stage_started_at=now,
        stage_elapsed_before=0.0,
    )  # fmt: skip
    return new, [
        SetWeight(rollout.id, rollout.track, rollout.segment, weight),
        announce(new, decision),
    ]


def promote_to_next_stage(rollout: Rollout, decision: Decision) -> Transition:
    """Move to the next stage, or make the canary stable after the last one."""
    r = rollout
    if r.stage_index >= r.plan.last_index:
        new = r.decided(decision, phase=Phase.SUCCEEDED, stage_started_at=None)
        return new, [
            PromoteToStable(r.id, r.track, r.segment, r.candidate_model),
            announce(new, decision),
        ]
    nxt = r.stage_index + 1
    new = r.decided(
        decision, phase=Phase.PROGRESSING, stage_index=nxt, stage_started_at=decision.at,
        stage_elapsed_before=0.0, consecutive_errors=0, stall_alerted=False,
    )  # fmt: skip
    weight = r.plan.stages[nxt].weight_bp
    return new, [
        SetWeight(r.id, r.track, r.segment, weight),
        announce(new, decision),
    ]


def promote(rollout: Rollout, now: float, actor: str = "operator", reason: str = "") -> Transition:
    """Skip the rest of the current stage: next stage now (or stable after the last)."""
    _refuse(rollout, "promote", RUNNING)
    what = "promoted by hand" + (f": {reason}" if reason else "")
    return promote_to_next_stage(rollout, Decision(now, DecisionName.PROMOTE, what, {}, actor))


def pause(rollout: Rollout, now: float, actor: str = "operator", reason: str = "") -> Transition:
    """Stop advancing (the canary keeps its weight and is still watched for failure)."""
    return pause_for(rollout, Decision(now, DecisionName.PAUSE, reason or "paused", {}, actor))


def pause_for(rollout: Rollout, decision: Decision) -> Transition:
    """:func:`pause` for a decision of the controller's own, with its evidence."""
    _refuse(rollout, "pause", frozenset({Phase.PROGRESSING}))
    return transition(
        rollout, decision, phase=Phase.PAUSED, stage_started_at=None,
        stage_elapsed_before=rollout.stage_elapsed(decision.at),
    )  # fmt: skip


def resume(rollout: Rollout, now: float, actor: str = "operator", reason: str = "") -> Transition:
    """Continue a paused rollout with the stage time it had left."""
    _refuse(rollout, "resume", frozenset({Phase.PAUSED}))
    decision = Decision(now, DecisionName.RESUME, reason or "resumed", {}, actor)
    return transition(
        rollout, decision, phase=Phase.PROGRESSING, stage_started_at=now, consecutive_errors=0
    )


def rollback(rollout: Rollout, now: float, actor: str = "operator", reason: str = "") -> Transition:
    """Send everyone back to stable and end the rollout as rolled back."""
    decision = Decision(now, DecisionName.ROLLBACK, reason or "rolled back", {}, actor)
    return rollback_for(rollout, decision)


def rollback_for(rollout: Rollout, decision: Decision) -> Transition:
    """:func:`rollback` for a decision of the controller's own, with its evidence."""
    _refuse(rollout, "roll back", RUNNING | {Phase.PENDING})
    back = Rollback(rollout.id, rollout.track, rollout.segment)
    return _end(rollout, decision, Phase.ROLLED_BACK, back)


def abort(rollout: Rollout, now: float, actor: str = "operator", reason: str = "") -> Transition:
    """End the rollout without a verdict (e.g. superseded); the canary gets no traffic."""
    _refuse(rollout, "abort", RUNNING | {Phase.PENDING})
    decision = Decision(now, DecisionName.ABORT, reason or "aborted", {}, actor)
    no_traffic = SetWeight(rollout.id, rollout.track, rollout.segment, 0)
    return _end(rollout, decision, Phase.ABORTED, no_traffic)


def _end(rollout: Rollout, decision: Decision, phase: Phase, action: Action) -> Transition:
    """Finish the rollout in ``phase``; ``action`` takes the canary's traffic away."""
    elapsed = rollout.stage_elapsed(decision.at)
    new = rollout.decided(
        decision, phase=phase, stage_started_at=None, stage_elapsed_before=elapsed
    )
    return new, [action, announce(new, decision)]
