"""What the demo observed over time: samples, decisions and each scenario's result.

Plain data shared by the runner (which fills it), the live view and the
HTML report (which draw it), and ``--json`` (which prints its summary).
Times are seconds since the demo began.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tara.retrain.run import Run, RunStep
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
    steps: list[Marker] = field(default_factory=list)
    """The fine-tuning run's steps (the full loop only): trigger, prepare, train, gate ..."""
    run: dict[str, Any] | None = None
    """The fine-tuning run as the controller stored it (the full loop only)."""
    served: dict[str, dict[str, int]] = field(default_factory=dict)
    """Answers per segment and model while the scenario ran (the full loop only)."""

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
            **({"run": self.run, "steps": [m.to_dict() for m in self.steps]} if self.run else {}),
            **({"served": self.served} if self.served else {}),
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
    def events(self) -> list[Marker]:
        """Every decision and every fine-tuning run step, in time order."""
        every = (m for r in self.results for m in (*r.markers, *r.steps))
        return sorted(every, key=lambda m: m.t)

    @property
    def ok(self) -> bool:
        """Whether every scenario ended as expected."""
        return bool(self.results) and all(r.ok for r in self.results)


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trigger_marker(run: Run, scenario: str, started: float) -> Marker:
    """The firing that started ``run``: each rule's value against its threshold, and why."""
    parts = []
    for t in run.triggers:
        samples = ", ".join(
            f"{k} {v}" for k, v in t.get("evidence", {}).items() if isinstance(v, int)
        )
        window = t.get("window_seconds")
        over = f" in the last {window:g} s" if isinstance(window, int | float) else ""
        parts.append(
            f"{t['trigger']} on {run.segment.label}: {_number(t['value'])} {t['op']} "
            f"{_number(t['threshold'])} ({samples}{over})"
        )
    reason = "; ".join(parts)
    return Marker(run.created_at - started, scenario, "trigger", "controller", reason, 0.0)


_GATE_CHECKS = ("accuracy", "satisfaction", "error_rate")


def describe_step(step: RunStep) -> str:
    """A run step's reason with the numbers behind it (dataset, tokens, the gate's checks)."""
    extra: list[str] = []
    evidence = step.evidence
    totals = evidence.get("totals")
    if isinstance(totals, dict):
        extra.append(f"read {totals.get('read')} interactions, kept {totals.get('kept')}")
    tokens = evidence.get("trained_tokens")
    if isinstance(tokens, int):
        extra.append(f"{tokens:,} tokens trained")
    checks = evidence.get("checks")
    if isinstance(checks, list):
        extra.extend(
            f"{c['name']} {_number(c['candidate'])} vs {_number(c['stable'])}"
            for c in checks
            if isinstance(c, dict) and c.get("name") in _GATE_CHECKS
        )
    return step.reason + (f" ({'; '.join(extra)})" if extra else "")
