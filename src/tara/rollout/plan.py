"""A rollout's plan: the stages the canary climbs, frozen when the rollout starts.

The plan is copied into each rollout (and its stored JSON), so changing the
settings later affects new rollouts only, never one half-way through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tara.rollout.bucketing import percent_to_bp
from tara.rollout.config import RolloutSettings


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage: canary weight, minimum time and evidence, and analysis cadence."""

    weight_bp: int
    min_duration: float
    """Seconds in the stage (not counting pauses) before it may pass."""
    min_requests: int
    min_ratings: int
    interval: float
    """Seconds between analyses; shorter in an intensive stage."""
    intensive: bool = False
    fail_confidence: float | None = None
    """Confidence needed to roll back in this stage; ``None``: the settings' default."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``fail_confidence`` only when the stage sets one)."""
        data: dict[str, Any] = {
            "weight_bp": self.weight_bp,
            "min_duration": self.min_duration,
            "min_requests": self.min_requests,
            "min_ratings": self.min_ratings,
            "interval": self.interval,
            "intensive": self.intensive,
        }
        if self.fail_confidence is not None:
            data["fail_confidence"] = self.fail_confidence
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        """Inverse of :meth:`to_dict`."""
        return cls(
            weight_bp=int(data["weight_bp"]),
            min_duration=float(data["min_duration"]),
            min_requests=int(data["min_requests"]),
            min_ratings=int(data["min_ratings"]),
            interval=float(data["interval"]),
            intensive=bool(data.get("intensive", False)),
            fail_confidence=(
                None if data.get("fail_confidence") is None else float(data["fail_confidence"])
            ),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """The partial stages in order; passing the last one promotes the canary to stable."""

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            msg = "a plan needs at least one stage"
            raise ValueError(msg)

    @property
    def last_index(self) -> int:
        """Index of the final partial stage."""
        return len(self.stages) - 1

    @property
    def total_min_duration(self) -> float:
        """Shortest possible rollout, in seconds."""
        return sum(s.min_duration for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"stages": [s.to_dict() for s in self.stages]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(Stage.from_dict(s) for s in data["stages"]))


def plan_from_settings(settings: RolloutSettings) -> Plan:
    """The plan the settings describe."""
    return Plan(
        tuple(
            Stage(
                weight_bp=percent_to_bp(s.percent),
                min_duration=s.duration.total_seconds(),
                min_requests=s.min_requests,
                min_ratings=s.min_ratings,
                interval=(
                    settings.intensive_interval if s.intensive else settings.interval
                ).total_seconds(),
                intensive=s.intensive,
                fail_confidence=s.fail_confidence,
            )
            for s in settings.stages
        )
    )
