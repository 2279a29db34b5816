"""What a rollout decision asks the outside world to do.

The pure decision code returns these; the controller loop carries them out
(routing-table writes, alerts, webhooks) and records metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    """Tell listeners (webhooks, logs) that something happened; ``data`` is JSON-ready."""

    rollout_id: str
    event: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Action = SetWeight | PromoteToStable | Rollback | Alert | Notify
