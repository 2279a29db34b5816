"""What the demo observed over time: samples, decisions and each scenario's result.

Plain data shared by the runner (which fills it), the live view and the
HTML report (which draw it), and ``--json`` (which prints its summary).
Times are seconds since the demo began.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tara.telemetry.windows import WindowStats


@dataclass(frozen=True, slots=True)
class Numbers:
    """One variant's recent traffic as the controller's window stats hold it."""

    requests: int = 0
    ratings: int = 0
    rating: float | None = None
    """Mean rating, ``None`` without ratings."""
    error_rate: float | None = None
    p95: float | None = None
    """95th percentile of request latency, seconds."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "requests": self.requests,
            "ratings": self.ratings,
            "rating": self.rating,
            "error_rate": self.error_rate,
            "p95_seconds": self.p95,
        }


def numbers_from(stats: WindowStats) -> Numbers:
    """Mean rating, error rate and p95 latency of ``stats``."""
    p95 = stats.latency_quantile(0.95)
    return Numbers(
        requests=stats.requests,
        ratings=stats.rating_count,
        rating=stats.rating_mean,
        error_rate=stats.error_rate,
        p95=None if p95 is None or math.isinf(p95) else p95,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """The rollout and both variants' numbers at one moment."""

    t: float
    scenario: str
    phase: str
    stage: int
    """1-based stage while a rollout runs, 0 when none does."""
    weight: float
    """Canary share of the segment's students, 0..1."""
    canary: Numbers
    stable: Numbers


@dataclass(frozen=True, slots=True)
class Marker:
    """One rollout decision (start, advance, rollback, succeed, pause...)."""

    t: float
    scenario: str
    decision: str
    actor: str
    reason: str
    weight: float
    """Canary weight right after the decision."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "t": round(self.t, 2),
            "decision": self.decision,
            "actor": self.actor,
            "reason": self.reason,
            "weight": self.weight,
        }


@dataclass(slots=True)
class ScenarioResult:
    """How one scenario went."""

    name: str
    candidate: str
    expected: str
    story: str
    rollout_id: str | None = None
    phase: str | None = None
    started: float | None = None
    ended: float | None = None
    final_weight: float | None = None
    stable_model: str | None = None
    """The track's stable model after the scenario (the candidate if it was promoted)."""
    markers: list[Marker] = field(default_factory=list)
    error: str | None = None
    """Why the scenario could not run or finish, if so."""

    @property
    def ok(self) -> bool:
        """Whether the rollout ended as the scenario expects."""
        return self.error is None and self.phase == self.expected

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        duration = None
        if self.started is not None and self.ended is not None:
            duration = round(self.ended - self.started, 1)
        return {
            "scenario": self.name,
            "candidate": self.candidate,
            "expected": self.expected,
            "outcome": self.phase,
            "ok": self.ok,
            "rollout_id": self.rollout_id,
            "seconds": duration,
            "final_canary_weight": self.final_weight,
            "stable_model": self.stable_model,
            "decisions": [m.to_dict() for m in self.markers],
            "error": self.error,
        }


@dataclass(slots=True)
class Timeline:
    """Everything the demo saw, in order."""

    samples: list[Sample] = field(default_factory=list)
    results: list[ScenarioResult] = field(default_factory=list)

    @property
    def markers(self) -> list[Marker]:
        """Every decision of every scenario, in time order."""
        return sorted((m for r in self.results for m in r.markers), key=lambda m: m.t)

    @property
    def ok(self) -> bool:
        """Whether every scenario ended as expected."""
        return bool(self.results) and all(r.ok for r in self.results)
