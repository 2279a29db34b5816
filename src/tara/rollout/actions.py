"""What a rollout decision asks the outside world to do.

The pure decision code returns these, and each has one executor: the
routing actions (:class:`SetWeight`, :class:`PromoteToStable`,
:class:`Rollback`) are carried out by the rollout service, which re-derives
the routing table after every saved change; :class:`Notify` and
:class:`Alert` by the controller loop (metrics, webhooks, the alert log
line) — at once for its own decisions, and from the rollout's outbox for
those an operator made elsewhere (see :mod:`tara.rollout.controller`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tara.rollout.decisions import Decision, Event
from tara.rollout.routing import Segment


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Send ``weight_bp`` basis points of the segment's students to the canary."""

    rollout_id: str
    track: str
    segment: Segment
    weight_bp: int


@dataclass(frozen=True, slots=True)
class PromoteToStable:
    """The canary becomes the stable model of the track's segment; the canary route goes."""

    rollout_id: str
    track: str
    segment: Segment
    model: str


@dataclass(frozen=True, slots=True)
class Rollback:
    """Send every student of the segment back to stable (canary weight 0)."""

    rollout_id: str
    track: str
    segment: Segment


@dataclass(frozen=True, slots=True)
class Alert:
    """Wake a human: the rollout needs attention it cannot give itself."""

    rollout_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Notify:
    """Announce one decision: count it; post its :meth:`body` to the webhooks if it has an event.

    Every decision is counted in ``tara_rollout_decisions_total``; those with
    an :attr:`event` (not holds or errors) also go to the webhooks.
    """

    rollout_id: str
    track: str
    decision: Decision
    rollout: Mapping[str, Any]
    """The rollout as the decision left it: segment, models, phase, stage, canary weight."""

    @property
    def event(self) -> Event | None:
        """The webhook event, ``None`` for a decision that is only counted."""
        return self.decision.decision.event

    @property
    def message(self) -> str:
        """Why (the decision's reason)."""
        return self.decision.reason

    @property
    def data(self) -> dict[str, Any]:
        """The numbers the decision rested on."""
        return dict(self.decision.evidence)

    def body(self) -> dict[str, Any]:
        """The JSON a webhook receives."""
        return {
            "event": self.event,
            "rollout_id": self.rollout_id,
            "track": self.track,
            **self.rollout,
            **self.decision.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (kept in a rollout's outbox)."""
        return {
            "rollout_id": self.rollout_id,
            "track": self.track,
            "decision": self.decision.to_dict(),
            "rollout": dict(self.rollout),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notify:
        """Inverse of :meth:`to_dict`."""
        return cls(
            str(data["rollout_id"]),
            str(data["track"]),
            Decision.from_dict(data["decision"]),
            dict(data["rollout"]),
        )


Action = SetWeight | PromoteToStable | Rollback | Alert | Notify
