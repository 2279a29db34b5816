"""What a rollout decision asks the outside world to do.

The pure decision code returns these; the controller loop carries them out
(routing-table writes, alerts, webhooks) and records metrics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from tara.rollout.routing import Segment


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
    """Tell listeners (webhooks, logs) that something happened; ``data`` is JSON-ready."""

    rollout_id: str
    event: Event
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Action = SetWeight | PromoteToStable | Rollback | Alert | Notify
