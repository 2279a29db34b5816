"""What rollout decisions are called, what they are announced as, and one decision's record.

A :class:`Decision` is what the history of a rollout keeps (and the admin
API shows); :class:`DecisionName` is its ``decision`` field, :class:`Event`
the ``event`` a webhook receives for it. Both are stored and sent as their
string values, which never change.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Event(enum.StrEnum):
    """What listeners (webhooks) are told happened to a rollout: the ``event`` of a webhook body."""

    STARTED = "started"
    PROMOTED = "promoted"
    """Moved to the next stage, by the controller (stage passed) or by hand."""
    SUCCEEDED = "succeeded"
    """The canary passed the last stage and is now the stable model."""
    PAUSED = "paused"
    RESUMED = "resumed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    STALLED = "stalled"
    """A stage has run far past its duration without passing (alerted once)."""


class DecisionName(enum.StrEnum):
    """What a decision was: the ``decision`` of a history entry (the stored, shown value).

    Promoting is one act with two causes: the controller promotes when a stage
    passed (stored as ``advance``, an older spelling kept for stored records
    and scripts) and an operator promotes by hand (``promote``). Metrics and
    webhooks call both ``promote``/``promoted``.
    """

    START = "start"
    HOLD = "hold"
    """Nothing to do yet; counted in metrics but kept out of the history."""
    STAGE_PASSED = "advance"
    """The stage passed: the controller promoted the rollout to the next stage."""
    PROMOTE = "promote"
    """An operator promoted the rollout by hand (after the last stage: made it stable)."""
    SUCCEED = "succeed"
    """The last stage passed: the canary became the stable model."""
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"
    ABORT = "abort"
    ERROR = "error"
    """The stats could not be read (held; paused after too many in a row)."""
    STALLED = "stalled"

    @property
    def metric_label(self) -> str:
        """The ``decision`` label in ``tara_rollout_decisions_total`` (promotions: ``promote``)."""
        return DecisionName.PROMOTE.value if self is DecisionName.STAGE_PASSED else self.value

    @property
    def event(self) -> Event | None:
        """The webhook event this decision is announced as (``None``: not announced)."""
        return _EVENTS.get(self)


_EVENTS = {
    DecisionName.START: Event.STARTED,
    DecisionName.STAGE_PASSED: Event.PROMOTED,
    DecisionName.PROMOTE: Event.PROMOTED,
    DecisionName.SUCCEED: Event.SUCCEEDED,
    DecisionName.PAUSE: Event.PAUSED,
    DecisionName.RESUME: Event.RESUMED,
    DecisionName.ROLLBACK: Event.ROLLED_BACK,
    DecisionName.ABORT: Event.ABORTED,
    DecisionName.STALLED: Event.STALLED,
}

STAGE_ENTRIES = frozenset({DecisionName.START, DecisionName.STAGE_PASSED, DecisionName.PROMOTE})
"""Decisions that begin a stage (``succeed`` ends the last one)."""


def _jsonable(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision: when, what, why, and the numbers it rested on."""

    at: float
    decision: DecisionName
    reason: str
    evidence: Mapping[str, Any]
    """The numbers compared; values may be objects with ``to_dict`` (serialised lazily,
    so the many "hold" decisions of a stage cost no formatting)."""
    actor: str = "controller"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (evidence objects with a ``to_dict`` are serialised now)."""
        return {
            "at": self.at,
            "decision": self.decision,
            "reason": self.reason,
            "evidence": {k: _jsonable(v) for k, v in self.evidence.items()},
            "actor": self.actor,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict`."""
        return cls(
            at=float(data["at"]),
            decision=DecisionName(data["decision"]),
            reason=str(data["reason"]),
            evidence=dict(data.get("evidence", {})),
            actor=str(data.get("actor", "controller")),
        )
