"""Canary analysis: each fallback trigger as a pure check, and their verdict.

Every check compares the canary with stable over the same window and returns
a :class:`Measurement` with the numbers it compared. Outcomes are distinct:

* ``FAIL`` — evidence, at ``fail_confidence`` and valid under continuous
  monitoring, that the canary is past a limit: roll back.
* ``PASS`` — evidence, at ``pass_confidence``, that the canary is within
  the limit (the upper bound of the harm is inside the margin).
* ``INCONCLUSIVE`` — not enough data either way yet: hold.
* ``ERROR`` — the stats could not be read or make no sense: never a reason
  to roll back (a metrics outage is not a bad model).

The checks: error rate above ``error_rate_limit`` *and* above stable's (an
upstream outage hits both variants); mean rating lower than stable's by more
than ``rating_drop_limit``; latency quantile above ``latency_ratio_limit``
times stable's, tested as "more than 5% of canary requests are slower than
2x stable's p95" (a share, so the beta-binomial sequence applies exactly).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from tara.rollout.config import RolloutSettings
from tara.rollout.sequential import (
    normal_mixture_halfwidth,
    rate_log_evidence,
    rate_lower,
    rate_upper,
)
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats

StatsInput = WindowStats | BaseException | None
"""What the controller hands over: stats, or the reason it has none."""

RATING_LEVELS = 5


class Outcome(enum.StrEnum):
    """Verdict of one check or of the whole analysis."""

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RateBounds:
    """A rate's confidence-sequence bounds, computed only when someone reads them.

    The verdict needs just the evidence at the limit; the bounds (a root
    search each) are for people, so they are worked out on serialisation.
    """

    s: float
    n: float
    limit: float
    fail_alpha: float
    pass_alpha: float
    strength: float

    def to_dict(self) -> dict[str, Any]:
        """``lower`` at the fail confidence and ``upper`` at the pass confidence."""
        return {
            "lower": rate_lower(self.s, self.n, self.fail_alpha, self.limit, self.strength),
            "upper": rate_upper(self.s, self.n, self.pass_alpha, self.limit, self.strength),
        }


@dataclass(frozen=True, slots=True)
class Measurement:
    """One check's outcome, why, and the numbers behind it."""

    check: str
    outcome: Outcome
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    bounds: RateBounds | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        evidence = dict(self.evidence)
        if self.bounds is not None:
            evidence.update(self.bounds.to_dict())
        return {
            "check": self.check,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "evidence": evidence,
        }


@dataclass(frozen=True, slots=True)
class Analysis:
    """The verdict over all checks, with each measurement."""

    outcome: Outcome
    reason: str
    measurements: tuple[Measurement, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "measurements": [m.to_dict() for m in self.measurements],
        }


def _rate_outcome(s: float, n: float, limit: float, cfg: RolloutSettings) -> Outcome:
    """FAIL if the rate's sequence lies above ``limit``, PASS if below, else INCONCLUSIVE."""
    evidence = rate_log_evidence(s, n, limit, limit, cfg.rate_prior_strength)
    if s > limit * n and evidence >= -math.log(1 - cfg.fail_confidence):
        return Outcome.FAIL
    if s < limit * n and evidence >= -math.log(1 - cfg.pass_confidence):
        return Outcome.PASS
    return Outcome.INCONCLUSIVE


def _rate_bounds(s: float, n: float, limit: float, cfg: RolloutSettings) -> RateBounds:
    return RateBounds(
        s, n, limit, 1 - cfg.fail_confidence, 1 - cfg.pass_confidence, cfg.rate_prior_strength
    )


_WORDS = {
    Outcome.FAIL: "confidently above",
    Outcome.PASS: "confidently within",
    Outcome.INCONCLUSIVE: "not yet clear of",
}


def check_error_rate(canary: WindowStats, stable: WindowStats, cfg: RolloutSettings) -> Measurement:
    """Canary error rate against the absolute limit and against stable."""
    name, limit = "error_rate", cfg.error_rate_limit
    n, s = canary.requests, canary.error_count
    ns, ss = stable.requests, stable.error_count
    evidence: dict[str, Any] = {
        "canary_requests": n,
        "canary_errors": s,
        "canary_rate": s / n if n else None,
        "stable_requests": ns,
        "stable_rate": ss / ns if ns else None,
        "limit": limit,
    }
    if n == 0:
        return Measurement(name, Outcome.INCONCLUSIVE, "no canary requests yet", evidence)
    outcome = _rate_outcome(s, n, limit, cfg)
    reason = f"canary error rate {s / n:.2%} of {n} is {_WORDS[outcome]} {limit:.2%}"
    if outcome is Outcome.FAIL and ns:
        # Blame the canary only if it is also worse than stable: Bonferroni halves of alpha.
        half, k = (1 - cfg.fail_confidence) / 2, cfg.rate_prior_strength
        canary_low = rate_lower(s, n, half, limit, k)
        stable_high = rate_upper(ss, ns, half, limit, k)
        evidence.update(canary_lower_vs_stable=canary_low, stable_upper=stable_high)
        if canary_low <= stable_high:
            outcome = Outcome.INCONCLUSIVE
            reason = (
                f"canary and stable both fail often (canary >= {canary_low:.2%}, "
                f"stable <= {stable_high:.2%}): upstream trouble, not the canary"
            )
    return Measurement(name, outcome, reason, evidence, _rate_bounds(s, n, limit, cfg))


def _mean_var(ratings: list[int], floor: float) -> tuple[float, float]:
    r1, r2, r3, r4, r5 = ratings
    n = r1 + r2 + r3 + r4 + r5
    total = r1 + 2 * r2 + 3 * r3 + 4 * r4 + 5 * r5
    squares = r1 + 4 * r2 + 9 * r3 + 16 * r4 + 25 * r5
    mean = total / n
    var = (squares - total * mean) / max(n - 1, 1)
    return mean, max(var, floor)


def check_rating_drop(
    canary: WindowStats, stable: WindowStats, cfg: RolloutSettings
) -> Measurement:
    """Stable's mean rating minus the canary's, against ``rating_drop_limit``."""
    name, limit = "rating_drop", cfg.rating_drop_limit
    nc, ns = canary.rating_count, stable.rating_count
    evidence: dict[str, Any] = {"canary_ratings": nc, "stable_ratings": ns, "limit": limit}
    if min(nc, ns) < cfg.min_test_ratings:
        reason = f"need {cfg.min_test_ratings} ratings per variant, have canary {nc}, stable {ns}"
        return Measurement(name, Outcome.INCONCLUSIVE, reason, evidence)
    mc, vc = _mean_var(canary.ratings, cfg.rating_variance_floor)
    ms, vs = _mean_var(stable.ratings, cfg.rating_variance_floor)
    variance = vc / nc + vs / ns
    drop = ms - mc
    scale = cfg.rating_mixture_scale
    lower = drop - normal_mixture_halfwidth(variance, 1 - cfg.fail_confidence, scale)
    upper = drop + normal_mixture_halfwidth(variance, 1 - cfg.pass_confidence, scale)
    evidence.update(canary_mean=mc, stable_mean=ms, drop=drop, lower=lower, upper=upper)
    if lower > limit:
        outcome = Outcome.FAIL
    elif upper <= limit:
        outcome = Outcome.PASS
    else:
        outcome = Outcome.INCONCLUSIVE
    reason = f"rating drop {drop:+.2f} in [{lower:+.2f}, {upper:+.2f}]: {_WORDS[outcome]} {limit:g}"
    return Measurement(name, outcome, reason, evidence)


def check_latency(canary: WindowStats, stable: WindowStats, cfg: RolloutSettings) -> Measurement:
    """Share of canary requests slower than ``ratio`` times stable's quantile."""
    name, q = "latency", cfg.latency_quantile
    allowed = 1.0 - q
    nc, ns = sum(canary.latency), sum(stable.latency)
    evidence: dict[str, Any] = {"canary_samples": nc, "stable_samples": ns, "limit": allowed}
    if ns < cfg.min_stable_latency_samples:
        reason = f"need {cfg.min_stable_latency_samples} stable latencies, have {ns}"
        return Measurement(name, Outcome.INCONCLUSIVE, reason, evidence)
    stable_q = stable.latency_quantile(q)
    evidence["stable_quantile"] = stable_q
    if nc == 0 or stable_q is None or stable_q == math.inf:
        return Measurement(name, Outcome.INCONCLUSIVE, "no comparable latencies yet", evidence)
    threshold = cfg.latency_ratio_limit * stable_q
    slow = canary.slower_than(threshold)
    evidence["threshold_seconds"] = threshold
    evidence["slow_share"] = slow / nc
    outcome = _rate_outcome(slow, nc, allowed, cfg)
    reason = (
        f"{slow / nc:.2%} of canary requests slower than {threshold:.3g}s "
        f"({cfg.latency_ratio_limit:g}x stable p{q * 100:g}) is {_WORDS[outcome]} {allowed:.0%}"
    )
    return Measurement(name, outcome, reason, evidence, _rate_bounds(slow, nc, allowed, cfg))


def stats_problem(stats: StatsInput) -> str | None:
    """Why these stats cannot be analysed, or ``None`` if they can."""
    if stats is None:
        return "no stats"
    if isinstance(stats, BaseException):
        return f"stats unreadable: {type(stats).__name__}: {stats}"
    if len(stats.latency) != len(LATENCY_BOUNDS) + 1 or len(stats.ratings) != RATING_LEVELS:
        return "stats have histograms of the wrong shape"
    try:
        lowest = min(stats.requests, min(stats.latency), min(stats.ratings), *stats.errors.values())
        too_many_errors = stats.error_count > stats.requests
    except TypeError:
        return "stats hold a non-numeric counter"
    if lowest < 0:
        return "stats hold a negative counter"
    if too_many_errors:
        return f"stats claim {stats.error_count} errors in {stats.requests} requests"
    return None


CHECKS = (check_error_rate, check_rating_drop, check_latency)

_CHECK_BUGS = (ArithmeticError, LookupError, TypeError, ValueError)
"""What a check may raise on malformed stats; it becomes an ``ERROR`` measurement."""


def analyse(canary: StatsInput, stable: StatsInput, cfg: RolloutSettings) -> Analysis:
    """Run every check: any error gives ``ERROR``, else any fail ``FAIL``, all pass ``PASS``.

    Errors win over failures on purpose: a verdict drawn from stats that are
    partly unreadable could roll back a healthy canary.
    """
    problem = stats_problem(canary)
    if problem is not None or not isinstance(canary, WindowStats):
        return Analysis(Outcome.ERROR, f"canary: {problem}")
    problem = stats_problem(stable)
    if problem is not None or not isinstance(stable, WindowStats):
        return Analysis(Outcome.ERROR, f"stable: {problem}")
    measurements: list[Measurement] = []
    for check in CHECKS:
        try:
            measurements.append(check(canary, stable, cfg))
        except _CHECK_BUGS as exc:
            reason = f"{check.__name__} could not read the stats: {type(exc).__name__}: {exc}"
            measurements.append(Measurement(check.__name__, Outcome.ERROR, reason))
    for outcome in (Outcome.ERROR, Outcome.FAIL):
        hits = [m.reason for m in measurements if m.outcome is outcome]
        if hits:
            return Analysis(outcome, "; ".join(hits), tuple(measurements))
    waiting = [m.reason for m in measurements if m.outcome is not Outcome.PASS]
    if waiting:
        return Analysis(Outcome.INCONCLUSIVE, "; ".join(waiting), tuple(measurements))
    return Analysis(Outcome.PASS, "every check within its limit", tuple(measurements))
