"""A fine-tuning run of one segment: where it is, what it has made so far, and how it got there.

A :class:`Run` is immutable; :mod:`tara.retrain.steps` returns a new one
for every change. Its states, in order::

    pending → prepared → uploaded → training → trained → evaluated → canary → promoted

and the endings ``failed`` (a step kept failing; ``reason`` says how),
``rejected`` (the evaluation gate said no: the model never reached a
student), ``rolled_back`` (its canary was rolled back) and ``cancelled``
(by an operator, or its job or rollout was stopped outside the loop). Each
state names what is *done*: a ``prepared`` run has its dataset and uploads
it next. Every change is kept in ``steps`` with its reason and the numbers
behind it, so ``tara finetune show RUN`` tells the run's whole story.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tara.rollout.routing import Segment


class RunState(enum.StrEnum):
    """Where a run is (the ``status`` label of ``tara_finetune_runs_total``)."""

    PENDING = "pending"
    """Admitted by a trigger; its data is prepared next."""
    PREPARED = "prepared"
    UPLOADED = "uploaded"
    TRAINING = "training"
    TRAINED = "trained"
    EVALUATED = "evaluated"
    """Passed the gate; its canary starts now (``auto_deploy``) or once approved."""
    CANARY = "canary"
    PROMOTED = "promoted"
    FAILED = "failed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {
        RunState.PROMOTED,
        RunState.FAILED,
        RunState.REJECTED,
        RunState.ROLLED_BACK,
        RunState.CANCELLED,
    }
)
"""States a run never leaves."""
OPEN = frozenset(RunState) - TERMINAL
"""States of a run still in progress (what ``max_open_runs`` counts)."""


@dataclass(frozen=True, slots=True)
class RunStep:
    """One change of state: when, into which state, why, and the numbers behind it."""

    at: float
    state: RunState
    reason: str
    evidence: Mapping[str, Any]
    actor: str = "controller"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "at": self.at,
            "state": self.state.value,
            "reason": self.reason,
            "evidence": dict(self.evidence),
            "actor": self.actor,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStep:
        """Inverse of :meth:`to_dict`."""
        return cls(
            at=float(data["at"]),
            state=RunState(data["state"]),
            reason=str(data["reason"]),
            evidence=dict(data.get("evidence", {})),
            actor=str(data.get("actor", "controller")),
        )


@dataclass(frozen=True, slots=True)
class Run:
    """A fine-tuning run of one segment, from the trigger that started it to its canary."""

    id: str
    track: str
    segment: Segment
    created_at: float
    data_since: float
    """The segment's data is taken from here (its last run, or ``volume_lookback`` ago) ..."""
    data_until: float
    """... up to here (when the run was admitted), so a retried prepare reads the same slice."""
    triggers: tuple[Mapping[str, Any], ...] = ()
    """Each rule that started the run: value, threshold, window and sample sizes."""
    state: RunState = RunState.PENDING
    state_since: float = 0.0
    updated_at: float = 0.0
    reason: str = ""
    """Why the run is where it is (the latest step's reason)."""
    dataset_dir: str | None = None
    dataset_hash: str | None = None
    examples: Mapping[str, int] | None = None
    """Examples per split (``train``, ``validation``, ``test``)."""
    training_file: str | None = None
    validation_file: str | None = None
    base_model: str | None = None
    job_id: str | None = None
    job_status: str | None = None
    checked_at: float | None = None
    """When the job (training) or the rollout (canary) was last looked at."""
    fine_tuned_model: str | None = None
    stable_model: str | None = None
    """The segment's stable model the gate compared with."""
    gate: Mapping[str, Any] | None = None
    """The gate's outcome, reason and every check with its numbers."""
    approved_by: str | None = None
    """Who let the model go to a canary (``auto_deploy`` or an operator); None: nobody yet."""
    rollout_id: str | None = None
    rollout_phase: str | None = None
    cancel_requested_by: str | None = None
    cancel_reason: str = ""
    ended_at: float | None = None
    steps: tuple[RunStep, ...] = ()

    @property
    def open(self) -> bool:
        """Whether the run is still in progress."""
        return self.state in OPEN

    def entered(
        self,
        state: RunState,
        at: float,
        reason: str,
        evidence: Mapping[str, Any] | None = None,
        actor: str = "controller",
        **changes: Any,
    ) -> Run:
        """A copy moved into ``state`` at ``at`` (recorded as a step) with ``changes``."""
        step = RunStep(at, state, reason, dict(evidence or {}), actor)
        ended = at if state in TERMINAL else None
        return replace(
            self,
            **changes,
            state=state,
            state_since=at,
            updated_at=at,
            reason=reason,
            ended_at=ended,
            steps=(*self.steps, step),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the one the run store keeps."""
        return {
            "id": self.id,
            "track": self.track,
            "segment": self.segment.label,
            "created_at": self.created_at,
            "data_since": self.data_since,
            "data_until": self.data_until,
            "triggers": [dict(t) for t in self.triggers],
            "state": self.state.value,
            "state_since": self.state_since,
            "updated_at": self.updated_at,
            "reason": self.reason,
            "dataset_dir": self.dataset_dir,
            "dataset_hash": self.dataset_hash,
            "examples": None if self.examples is None else dict(self.examples),
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "base_model": self.base_model,
            "job_id": self.job_id,
            "job_status": self.job_status,
            "checked_at": self.checked_at,
            "fine_tuned_model": self.fine_tuned_model,
            "stable_model": self.stable_model,
            "gate": None if self.gate is None else dict(self.gate),
            "approved_by": self.approved_by,
            "rollout_id": self.rollout_id,
            "rollout_phase": self.rollout_phase,
            "cancel_requested_by": self.cancel_requested_by,
            "cancel_reason": self.cancel_reason,
            "ended_at": self.ended_at,
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """Inverse of :meth:`to_dict`; raises ``KeyError``/``ValueError``/``TypeError``."""

        def text(name: str) -> str | None:
            value = data.get(name)
            return None if value is None else str(value)

        def number(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        examples = data.get("examples")
        gate = data.get("gate")
        return cls(
            id=str(data["id"]),
            track=str(data["track"]),
            segment=Segment.parse(str(data["segment"])),
            created_at=float(data["created_at"]),
            data_since=float(data["data_since"]),
            data_until=float(data["data_until"]),
            triggers=tuple(dict(t) for t in data.get("triggers", ())),
            state=RunState(data["state"]),
            state_since=float(data.get("state_since", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
            reason=str(data.get("reason", "")),
            dataset_dir=text("dataset_dir"),
            dataset_hash=text("dataset_hash"),
            examples=None if examples is None else {str(k): int(v) for k, v in examples.items()},
            training_file=text("training_file"),
            validation_file=text("validation_file"),
            base_model=text("base_model"),
            job_id=text("job_id"),
            job_status=text("job_status"),
            checked_at=number("checked_at"),
            fine_tuned_model=text("fine_tuned_model"),
            stable_model=text("stable_model"),
            gate=None if gate is None else dict(gate),
            approved_by=text("approved_by"),
            rollout_id=text("rollout_id"),
            rollout_phase=text("rollout_phase"),
            cancel_requested_by=text("cancel_requested_by"),
            cancel_reason=str(data.get("cancel_reason", "")),
            ended_at=number("ended_at"),
            steps=tuple(RunStep.from_dict(s) for s in data.get("steps", ())),
        )
