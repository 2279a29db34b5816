"""What ``tara simulate`` simulates: canary effects, outages, built-in scenarios, their goals.

A :class:`Scenario` is a canary described relative to stable (an
:class:`Effect`), the trouble it meets (an :class:`Outage`, a routing bug,
a degradation that starts late) and the :class:`Goal` a correct controller
meets on it; :class:`Traffic` is the segment's traffic and stable's
behaviour, shared by every scenario. :data:`SCENARIOS` are the goals of the
canary statistics (``bench/simulate_report.md`` measures them).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tara.rollout.traffic import VariantProfile

Expect = Literal["promote", "rollback", "pause"]
Floats = NDArray[np.float64]

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Effect:
    """How the canary differs from stable (every field relative to stable's profile)."""

    error_rate: float | None = None
    """The canary's error rate; ``None``: stable's."""
    rating_delta: float = 0.0
    latency_factor: float = 1.0
    rating_rate: float | None = None
    """Share of the canary's answers rated; ``None``: stable's."""

    def apply(self, stable: VariantProfile) -> VariantProfile:
        """The canary's profile."""
        return dataclasses.replace(
            stable,
            error_rate=stable.error_rate if self.error_rate is None else self.error_rate,
            rating_mean=min(5.0, max(1.0, stable.rating_mean + self.rating_delta)),
            latency_median=stable.latency_median * self.latency_factor,
            rating_rate=stable.rating_rate if self.rating_rate is None else self.rating_rate,
        )

    def describe(self, stable: VariantProfile) -> str:
        """The effect in words (``identical`` for none)."""
        parts = []
        if self.error_rate is not None:
            parts.append(f"errors {self.error_rate:.0%} (stable {stable.error_rate:.0%})")
        if self.rating_delta:
            parts.append(f"rating {self.rating_delta:+g}")
        if self.latency_factor != 1.0:
            parts.append(f"{self.latency_factor:g}x slower")
        if self.rating_rate is not None:
            parts.append(
                f"rates {self.rating_rate:.0%} of answers (stable {stable.rating_rate:.0%})"
            )
        return ", ".join(parts) or "identical to stable"


@dataclass(frozen=True, slots=True)
class Outage:
    """An upstream outage: both variants fail an extra ``error_rate`` of requests."""

    start_hours: float
    hours: float
    error_rate: float

    def added_errors(self, t: Floats) -> Floats:
        """Extra failure probability at times ``t`` (seconds since the rollout began)."""
        inside = (t >= self.start_hours * HOUR) & (t < (self.start_hours + self.hours) * HOUR)
        return np.where(inside, self.error_rate, 0.0)


@dataclass(frozen=True, slots=True)
class Goal:
    """One target on a summary: ``measure`` (a dotted key) ``op`` ``bound``."""

    measure: str
    op: Literal["<=", ">="]
    bound: float

    def met(self, summary: dict[str, Any]) -> bool:
        """Whether ``summary`` meets this goal (a missing measure does not)."""
        value: Any = summary
        for part in self.measure.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return False
        return bool(value <= self.bound if self.op == "<=" else value >= self.bound)

    def __str__(self) -> str:
        return f"{self.measure} {self.op} {self.bound:g}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A canary, the traffic it meets, and what a correct controller does."""

    name: str
    description: str
    effect: Effect
    expect: Expect
    goals: tuple[Goal, ...] = ()
    outage: Outage | None = None
    degrade_at_hours: float = 0.0
    """The canary behaves like stable until then."""
    srm_factor: float = 1.0
    """Share of its weight's students routing actually gives the canary (a bug if not 1)."""


def _g(measure: str, op: Literal["<=", ">="], bound: float) -> Goal:
    return Goal(measure, op, bound)


BACK, PROMO = "rollback_rate", "promotion_rate"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("aa", "identical canary and stable", Effect(), "promote",
                 (_g(BACK, "<=", 0.01), _g(PROMO, ">=", 0.99))),
        Scenario("errors", "canary fails 10% of requests", Effect(error_rate=0.10), "rollback",
                 (_g("canary_requests_at_rollback.median", "<=", 100),
                  _g("canary_requests_at_rollback.p95", "<=", 250))),
        Scenario("errors-past", "just past the error limit", Effect(error_rate=0.07), "rollback",
                 (_g(BACK, ">=", 0.95), _g(PROMO, "<=", 0.01))),
        Scenario("errors-inside", "just inside the error limit", Effect(error_rate=0.04),
                 "promote", (_g(BACK, "<=", 0.05),)),
        Scenario("ratings", "canary rated 0.5 lower", Effect(rating_delta=-0.5), "rollback",
                 (_g("canary_ratings_at_rollback.median", "<=", 400),)),
        Scenario("ratings-past", "just past the rating limit", Effect(rating_delta=-0.4),
                 "rollback", (_g(BACK, ">=", 0.95), _g(PROMO, "<=", 0.01))),
        Scenario("ratings-inside", "just inside the rating limit", Effect(rating_delta=-0.2),
                 "promote", (_g(BACK, "<=", 0.05),)),
        Scenario("latency", "canary 3x slower", Effect(latency_factor=3.0), "rollback",
                 (_g("canary_requests_at_rollback.median", "<=", 150),)),
        Scenario("latency-past", "just past the latency limit", Effect(latency_factor=2.3),
                 "rollback", (_g(BACK, ">=", 0.95), _g(PROMO, "<=", 0.01))),
        Scenario("latency-inside", "just inside the latency limit", Effect(latency_factor=1.8),
                 "promote", (_g(BACK, "<=", 0.05),)),
        Scenario("better", "canary rated 0.3 higher", Effect(rating_delta=0.3), "promote",
                 (_g(PROMO, ">=", 0.99),)),
        Scenario("outage", "healthy canary; an upstream outage fails 30% of both variants' "
                 "requests for 2 h on day 1", Effect(), "promote",
                 (_g(BACK, "<=", 0.01), _g(PROMO, ">=", 0.99)),
                 outage=Outage(24.0, 2.0, 0.3)),
        Scenario("srm", "healthy canary, but routing gives it half its students", Effect(),
                 "pause", (_g("pause_rate", ">=", 0.95), _g(BACK, "<=", 0.01)), srm_factor=0.5),
        Scenario("rating-rate", "healthy canary whose students rate less often",
                 Effect(rating_rate=0.2), "promote",
                 (_g("flag_rate", ">=", 0.95), _g(PROMO, ">=", 0.99))),
        Scenario("degrade", "canary starts failing 10% of requests on day 5 (stage 2)",
                 Effect(error_rate=0.10), "rollback", (_g(BACK, ">=", 0.99),),
                 degrade_at_hours=120.0),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Traffic:
    """The segment's traffic and stable's behaviour, shared by every scenario."""

    requests_per_hour: float = 1200.0
    students: int = 5000
    """Students of the segment; each is hashed into a variant."""
    stable: VariantProfile = field(default_factory=VariantProfile)


def with_effects(
    scenario: Scenario,
    stable: VariantProfile,
    *,
    error_rate: float | None = None,
    rating_delta: float | None = None,
    latency_factor: float | None = None,
    degrade_at_hours: float | None = None,
    outage: Outage | None = None,
) -> Scenario:
    """``scenario`` with a custom canary effect: each option *replaces* the scenario's own.

    A customised scenario's goals lapse (they were set for its own effect);
    its description says what was replaced.
    """
    effect, notes = scenario.effect, []
    for name, value in (
        ("error_rate", error_rate), ("rating_delta", rating_delta),
        ("latency_factor", latency_factor),
    ):  # fmt: skip
        if value is not None:
            effect = dataclasses.replace(effect, **{name: value})
    if effect != scenario.effect:
        notes.append(
            f"canary {effect.describe(stable)}, replacing {scenario.effect.describe(stable)}"
        )
    changed = dataclasses.replace(
        scenario,
        effect=effect,
        degrade_at_hours=scenario.degrade_at_hours
        if degrade_at_hours is None
        else degrade_at_hours,
        outage=outage or scenario.outage,
    )
    if changed == scenario:
        return scenario
    if degrade_at_hours is not None:
        notes.append(f"the canary turns bad after {degrade_at_hours:g} h")
    if outage is not None:
        notes.append(
            f"outage: +{outage.error_rate:.0%} errors in both variants from hour "
            f"{outage.start_hours:g} for {outage.hours:g} h"
        )
    return dataclasses.replace(
        changed,
        name=f"{scenario.name}+custom",
        description=f"{scenario.description} ({'; '.join(notes)})",
        goals=(),
    )


def parse_outage(text: str) -> Outage:
    """``HOUR,HOURS,RATE`` (e.g. ``24,2,0.3``) as an :class:`Outage`."""
    try:
        start, hours, rate = (float(x) for x in text.split(","))
    except ValueError:
        msg = f"outage must be HOUR,HOURS,RATE (e.g. 24,2,0.3), got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return Outage(start, hours, rate)
