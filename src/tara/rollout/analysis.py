"""Canary analysis: each fallback trigger as a pure check, the evidence guards, and the verdict.

Every check compares the canary with stable over the same window and returns
a :class:`Measurement` with the numbers it compared. Outcomes are distinct:

* ``FAIL`` — evidence, valid however often the controller looks, that the
  canary is past a limit: roll back.
* ``PASS`` — evidence, at ``pass_confidence``, that the canary is within
  the limit.
* ``INCONCLUSIVE`` — not enough data either way yet: hold.
* ``ERROR`` — the stats could not be read or make no sense: never a reason
  to roll back (a metrics outage is not a bad model).

Each check tests the *limit*, not equality with stable: "error rate at most
5%", "drop at most 0.3", "p95 at most 2x stable's". A canary just inside a
limit is therefore rarely rolled back and one just past it nearly always.
The checks: error rate above ``error_rate_limit`` *and* above stable's (an
upstream outage hits both variants: it holds, never rolls back); stable's
mean rating above the canary's by more than ``rating_drop_limit``; more
than 5% of canary requests slower than ``latency_ratio_limit`` times an
upper bound of stable's p95 (a share, so the rate test applies exactly).

Two guards check the evidence itself, not the canary: the sample ratio (the
canary's share of distinct students and of requests against its weight; a
mismatch means routing is broken and no decision may rest on the data) and
rating-rate parity (canary students rating at another rate than stable's
make the mean ratings incomparable at face value).

The ``*_verdicts`` functions work on numpy arrays, one rollout per row, so the
simulator runs thousands of rollouts through the very numbers the controller uses.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tara.rollout.bucketing import BUCKETS
from tara.rollout.config import RolloutSettings
from tara.rollout.plan import Stage
from tara.rollout.sequential import RateTest, mean_log_evidence, mean_margin, rate_log_evidence
from tara.telemetry.quantiles import counts_above_many, histogram_quantiles
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats

StatsInput = WindowStats | BaseException | None
"""What the controller hands over: stats, or the reason it has none."""

Bools = NDArray[np.bool_]
Floats = NDArray[np.float64]

RATING_LEVELS = 5
SRM_RATIOS = (1.05, 1.1, 1.2, 1.5, 2.0, 4.0)
"""Alternatives (odds ratios) of the sample-ratio tests: mismatches are often small."""


class Outcome(enum.StrEnum):
    """Verdict of one check or of the whole analysis."""

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One check's outcome, why, and the numbers behind it."""

    check: str
    outcome: Outcome
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "check": self.check,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Analysis:
    """The verdict over all checks, with each measurement and each guard."""

    outcome: Outcome
    reason: str
    measurements: tuple[Measurement, ...] = ()
    guards: tuple[Measurement, ...] = ()
    """Checks of the evidence: ``FAIL`` means the data is biased (see the module docstring)."""

    def guard(self, check: str) -> Measurement | None:
        """The guard named ``check`` if it found a problem, else ``None``."""
        for g in self.guards:
            if g.check == check and g.outcome is Outcome.FAIL:
                return g
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "measurements": [m.to_dict() for m in self.measurements],
            "guards": [g.to_dict() for g in self.guards],
        }


@dataclass(frozen=True, slots=True)
class Levels:
    """The error rates a look may spend: rolling back, passing, and the two guards."""

    fail: float
    passing: float
    worse: float
    """Of "the canary fails more often than stable" (the outage hold)."""
    srm: float
    rating_rate: float

    @classmethod
    def of(cls, cfg: RolloutSettings, stage: Stage | None = None) -> Levels:
        """The levels of ``stage`` (its own rollback confidence if it sets one)."""
        fail = stage.fail_confidence if stage and stage.fail_confidence else cfg.fail_confidence
        return cls(
            1 - fail,
            1 - cfg.pass_confidence,
            1 - cfg.outage_confidence,
            1 - cfg.srm_confidence,
            1 - cfg.rating_rate_confidence,
        )


def _need(alpha: float) -> float:
    """Log evidence at which a mixture likelihood ratio rejects at level ``alpha``."""
    return math.log(1.0 / alpha)


# -- error rate ----------------------------------------------------------------
def error_verdicts(
    canary_errors: ArrayLike,
    canary_requests: ArrayLike,
    stable_errors: ArrayLike,
    stable_requests: ArrayLike,
    limit: float,
    levels: Levels,
) -> tuple[Bools, Bools, Bools]:
    """``(fail, pass, shared)``: past the limit and worse than stable; within the limit;
    past the limit but no worse than stable (upstream trouble: hold).

    "Worse than stable" compares the canary's share of all errors with its
    share of all requests, which an outage hitting both variants alike leaves
    unchanged however high it drives both rates. Both tests must reject for a
    rollback (an intersection-union test), so each keeps its whole level; the
    comparison's is small, so an outage is held with near certainty.
    """
    ce, cn = np.asarray(canary_errors, float), np.asarray(canary_requests, float)
    se, sn = np.asarray(stable_errors, float), np.asarray(stable_requests, float)
    past = RateTest(limit, levels.fail, fail=True).rejects(ce, cn) & (cn > 0)
    share = np.where(cn + sn > 0, cn / np.maximum(cn + sn, 1.0), 1.0)
    worse = (sn == 0) | (
        rate_log_evidence(ce, ce + se, np.minimum(share, 1 - 1e-9), up=True) >= _need(levels.worse)
    )
    within = RateTest(limit, levels.passing, fail=False).rejects(ce, cn) & (cn > 0)
    return past & worse, within, past & ~worse


def check_error_rate(
    canary: WindowStats, stable: WindowStats, cfg: RolloutSettings, levels: Levels
) -> Measurement:
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
    fail_at = RateTest(limit, levels.fail, fail=True).threshold(n)
    pass_at = RateTest(limit, levels.passing, fail=False).threshold(n)
    evidence.update(fail_at=int(fail_at), pass_at=int(pass_at))
    fail, within, shared = (bool(x) for x in error_verdicts(s, n, ss, ns, limit, levels))
    rate = f"canary error rate {s / n:.2%} ({s} of {n})"
    if fail:
        reason = f"{rate} is confidently above {limit:.2%} and above stable's"
        return Measurement(name, Outcome.FAIL, reason, evidence)
    if shared:
        reason = (
            f"{rate} is past {limit:.2%}, but stable fails as often "
            f"({ss / ns:.2%}): upstream trouble, not the canary"
        )
        return Measurement(name, Outcome.INCONCLUSIVE, reason, evidence)
    if within:
        return Measurement(
            name, Outcome.PASS, f"{rate} is confidently within {limit:.2%}", evidence
        )
    reason = f"{rate} is not yet clear of {limit:.2%} (rollback at {int(fail_at)} errors)"
    return Measurement(name, Outcome.INCONCLUSIVE, reason, evidence)


# -- ratings -------------------------------------------------------------------
def _mean_var(ratings: Floats, floor: float) -> tuple[Floats, Floats, Floats]:
    """Count, mean and variance (floored) of rating histograms, one per row."""
    levels = np.arange(1, RATING_LEVELS + 1, dtype=np.float64)
    n = ratings.sum(axis=-1)
    safe = np.maximum(n, 1.0)
    mean = (ratings * levels).sum(axis=-1) / safe
    squares = (ratings * levels * levels).sum(axis=-1)
    var = (squares - n * mean * mean) / np.maximum(n - 1.0, 1.0)
    return n, mean, np.maximum(var, floor)


def rating_verdicts(
    canary_ratings: ArrayLike, stable_ratings: ArrayLike, cfg: RolloutSettings, levels: Levels
) -> tuple[Bools, Bools, Floats, Floats]:
    """``(fail, pass, drop, variance)`` of stable's mean rating minus the canary's.

    The drop's variance is the observed variances plugged in; the test waits
    for ``min_test_ratings`` per variant so the mean is close enough to normal.
    """
    nc, mc, vc = _mean_var(np.asarray(canary_ratings, float), cfg.rating_variance_floor)
    ns, ms, vs = _mean_var(np.asarray(stable_ratings, float), cfg.rating_variance_floor)
    drop = ms - mc
    variance = vc / np.maximum(nc, 1.0) + vs / np.maximum(ns, 1.0)
    enough = np.minimum(nc, ns) >= cfg.min_test_ratings
    limit, scale = cfg.rating_drop_limit, cfg.rating_mixture_scale
    fail = enough & (mean_log_evidence(drop - limit, variance, scale) >= _need(levels.fail))
    within = enough & (mean_log_evidence(limit - drop, variance, scale) >= _need(levels.passing))
    return fail, within, drop, variance


def check_rating_drop(
    canary: WindowStats, stable: WindowStats, cfg: RolloutSettings, levels: Levels
) -> Measurement:
    """Stable's mean rating minus the canary's, against ``rating_drop_limit``."""
    name, limit = "rating_drop", cfg.rating_drop_limit
    nc, ns = canary.rating_count, stable.rating_count
    evidence: dict[str, Any] = {"canary_ratings": nc, "stable_ratings": ns, "limit": limit}
    if min(nc, ns) < cfg.min_test_ratings:
        reason = f"need {cfg.min_test_ratings} ratings per variant, have canary {nc}, stable {ns}"
        return Measurement(name, Outcome.INCONCLUSIVE, reason, evidence)
    fail_, within_, drop_, var_ = rating_verdicts(canary.ratings, stable.ratings, cfg, levels)
    drop, variance = float(drop_), float(var_)
    scale = cfg.rating_mixture_scale
    lower = drop - mean_margin(variance, levels.fail, scale)
    upper = drop + mean_margin(variance, levels.passing, scale)
    evidence.update(
        canary_mean=canary.rating_mean, stable_mean=stable.rating_mean, drop=drop,
        lower=lower, upper=upper,
    )  # fmt: skip
    if bool(fail_):
        outcome, words = Outcome.FAIL, "confidently above"
    elif bool(within_):
        outcome, words = Outcome.PASS, "confidently within"
    else:
        outcome, words = Outcome.INCONCLUSIVE, "not yet clear of"
    reason = f"rating drop {drop:+.2f} in [{lower:+.2f}, {upper:+.2f}]: {words} {limit:g}"
    return Measurement(name, outcome, reason, evidence)


# -- latency -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LatencyVerdicts:
    """What :func:`latency_verdicts` found, one entry per rollout."""

    fail: Bools
    passing: Bools
    stable_upper: Floats
    """Stable's p95, bounded above (``nan`` until stable has enough requests)."""
    stable_lower: Floats
    slow_share: Floats
    """Canary requests slower than the rollback threshold, as a share."""


def latency_verdicts(
    canary_latency: ArrayLike, stable_latency: ArrayLike, cfg: RolloutSettings, levels: Levels
) -> LatencyVerdicts:
    """The canary's share of requests slower than ``ratio`` times stable's quantile.

    Stable's quantile is itself uncertain, so a rollback compares with
    ``ratio`` times an *upper* confidence bound of it (half the level each)
    and a pass with a *lower* one: stable's noise can delay a verdict, never
    make a wrong one. Both bounds come from the same rate test: the largest
    threshold whose stable share above is confidently below ``1 - q``.
    """
    c = np.atleast_2d(np.asarray(canary_latency, float))
    s = np.atleast_2d(np.asarray(stable_latency, float))
    nc, ns = c.sum(axis=1), s.sum(axis=1)
    allowed, ratio = 1.0 - cfg.latency_quantile, cfg.latency_ratio_limit
    fail_half, pass_half = levels.fail / 2, levels.passing / 2
    enough = ns >= cfg.min_stable_latency_samples
    # Stable's share above the bound is confidently below `allowed`: its quantile is below.
    above_upper = RateTest(allowed, fail_half, fail=False).threshold(ns)
    above_lower = RateTest(allowed, pass_half, fail=True).threshold(ns)
    safe_ns = np.maximum(ns, 1.0)
    upper = np.where(
        enough & (above_upper >= 0),
        histogram_quantiles(s, LATENCY_BOUNDS, 1 - above_upper / safe_ns),
        np.nan,
    )
    lower = np.where(
        enough & (above_lower <= ns),
        histogram_quantiles(s, LATENCY_BOUNDS, 1 - above_lower / safe_ns),
        np.nan,
    )
    usable_u = np.isfinite(upper) & (nc > 0)
    usable_l = np.isfinite(lower) & (nc > 0)
    slow_fail = counts_above_many(c, LATENCY_BOUNDS, np.where(usable_u, ratio * upper, math.inf))
    slow_pass = counts_above_many(c, LATENCY_BOUNDS, np.where(usable_l, ratio * lower, 0.0))
    fail = usable_u & RateTest(allowed, fail_half, fail=True).rejects(slow_fail, nc)
    passing = usable_l & RateTest(allowed, pass_half, fail=False).rejects(slow_pass, nc)
    share = np.where(nc > 0, slow_fail / np.maximum(nc, 1.0), np.nan)
    return LatencyVerdicts(fail, passing, upper, lower, share)


def check_latency(
    canary: WindowStats, stable: WindowStats, cfg: RolloutSettings, levels: Levels
) -> Measurement:
    """Share of canary requests slower than ``ratio`` times stable's quantile."""
    name, q = "latency", cfg.latency_quantile
    allowed, ratio = 1.0 - q, cfg.latency_ratio_limit
    nc, ns = sum(canary.latency), sum(stable.latency)
    evidence: dict[str, Any] = {"canary_samples": nc, "stable_samples": ns, "limit": allowed}
    if ns < cfg.min_stable_latency_samples:
        reason = f"need {cfg.min_stable_latency_samples} stable latencies, have {ns}"
        return Measurement(name, Outcome.INCONCLUSIVE, reason, evidence)
    v = latency_verdicts(canary.latency, stable.latency, cfg, levels)
    upper, lower = float(v.stable_upper[0]), float(v.stable_lower[0])
    evidence.update(
        stable_quantile=stable.latency_quantile(q),
        stable_quantile_upper=_finite(upper), stable_quantile_lower=_finite(lower),
        threshold_seconds=_finite(ratio * upper), slow_share=_finite(float(v.slow_share[0])),
        fail_at=int(RateTest(allowed, levels.fail / 2, fail=True).threshold(nc)),
    )  # fmt: skip
    if bool(v.fail[0]):
        outcome, words = Outcome.FAIL, "confidently above"
    elif bool(v.passing[0]):
        outcome, words = Outcome.PASS, "confidently within"
    else:
        outcome, words = Outcome.INCONCLUSIVE, "not yet clear of"
    if nc == 0 or not math.isfinite(upper):
        return Measurement(
            name, outcome, f"no comparable latencies yet: {words} the limit", evidence
        )
    reason = (
        f"{v.slow_share[0]:.2%} of canary requests slower than {ratio * upper:.3g}s "
        f"({ratio:g}x stable p{q * 100:g}, at most {upper:.3g}s) is {words} {allowed:.0%}"
    )
    return Measurement(name, outcome, reason, evidence)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# -- guards on the evidence ------------------------------------------------------
def _outside(x: ArrayLike, n: ArrayLike, low: ArrayLike, high: ArrayLike, need: float) -> Bools:
    """Whether ``x`` of ``n`` is confidently below ``low`` or above ``high`` (a share)."""
    above = rate_log_evidence(x, n, high, up=True, ratios=SRM_RATIOS) >= need
    below = rate_log_evidence(x, n, low, up=False, ratios=SRM_RATIOS) >= need
    return (np.asarray(n) > 0) & (above | below)


def sample_ratio_verdicts(
    canary_students: ArrayLike,
    stable_students: ArrayLike,
    canary_requests: ArrayLike,
    stable_requests: ArrayLike,
    weight: ArrayLike,
    cfg: RolloutSettings,
    levels: Levels,
) -> Bools:
    """Whether the canary's share of distinct students or of requests is off its weight.

    Each student is routed once, by a hash, so the canary's count of distinct
    students is binomial: exact. Requests come in clusters (a student asks
    many), so their share is weighed as if there were only as many
    observations as students. ``stable_requests`` are stable's own: without
    the fallbacks and the requests that carry no student id.
    """
    cs, ss = np.asarray(canary_students, float), np.asarray(stable_students, float)
    cr, sr = np.asarray(canary_requests, float), np.asarray(stable_requests, float)
    w = np.asarray(weight, float)
    tol = cfg.srm_tolerance
    low, high = w * (1 - tol), np.minimum(w * (1 + tol), 1 - 1e-9)
    need = _need(levels.srm / 4)  # two shares, two sides
    students = cs + ss
    request_share = cr / np.maximum(cr + sr, 1.0)
    return _outside(cs, students, low, high, need) | _outside(
        request_share * students, np.where(cr + sr > 0, students, 0.0), low, high, need
    )


def check_sample_ratio(
    canary: WindowStats, stable: WindowStats, weight_bp: int, cfg: RolloutSettings, levels: Levels
) -> Measurement:
    """The canary's share of distinct students and of requests against its weight."""
    name, weight = "sample_ratio", weight_bp / BUCKETS
    stable_own = stable.requests - stable.fallbacks - stable.unidentified
    evidence: dict[str, Any] = {
        "weight": weight,
        "tolerance": cfg.srm_tolerance,
        "canary_requests": canary.requests,
        "stable_requests": stable_own,
        "canary_request_share": _share(canary.requests, stable_own),
        "canary_students": canary.students,
        "stable_students": stable.students,
    }
    if canary.students is None or stable.students is None:
        reason = "this metric source does not count distinct students: sample ratio not checked"
        return Measurement(name, Outcome.INCONCLUSIVE, reason, evidence)
    evidence["canary_student_share"] = _share(canary.students, stable.students)
    mismatch = bool(
        sample_ratio_verdicts(
            canary.students, stable.students, canary.requests, stable_own, weight, cfg, levels
        )[()]
    )
    numbers = (
        f"canary has {canary.students} of {canary.students + stable.students} distinct "
        f"students ({_pct(evidence['canary_student_share'])}) and "
        f"{_pct(evidence['canary_request_share'])} of {canary.requests + stable_own} requests "
        f"for a weight of {weight:.0%}"
    )
    if mismatch:
        return Measurement(name, Outcome.FAIL, f"sample ratio mismatch: {numbers}", evidence)
    return Measurement(name, Outcome.PASS, f"sample ratio consistent: {numbers}", evidence)


def _share(part: int, other: int) -> float | None:
    return part / (part + other) if part + other else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def rating_rate_verdicts(
    canary_ratings: ArrayLike,
    canary_answers: ArrayLike,
    stable_ratings: ArrayLike,
    stable_answers: ArrayLike,
    cfg: RolloutSettings,
    levels: Levels,
) -> Bools:
    """Whether canary students rate a clearly different share of their answers.

    Given both variants' answers, the canary's share of all ratings is what
    its share of answers predicts when both rate alike; rating rates further
    apart than ``rating_rate_tolerance`` (relative) move it out of a band.
    """
    rc, rs = np.asarray(canary_ratings, float), np.asarray(stable_ratings, float)
    ac, as_ = np.asarray(canary_answers, float), np.asarray(stable_answers, float)
    pi = np.clip(ac / np.maximum(ac + as_, 1.0), 1e-9, 1 - 1e-9)
    odds, tol = pi / (1 - pi), 1 + cfg.rating_rate_tolerance
    high, low = odds * tol / (1 + odds * tol), odds / tol / (1 + odds / tol)
    return (ac > 0) & (as_ > 0) & _outside(rc, rc + rs, low, high, _need(levels.rating_rate / 2))


def check_rating_rate(
    canary: WindowStats, stable: WindowStats, cfg: RolloutSettings, levels: Levels
) -> Measurement:
    """Ratings per answer, canary against stable."""
    name = "rating_rate"
    ac, as_ = canary.answered, stable.answered
    rc, rs = canary.rating_count, stable.rating_count
    c_rate, s_rate = (rc / ac if ac > 0 else None), (rs / as_ if as_ > 0 else None)
    evidence: dict[str, Any] = {
        "canary_rating_rate": c_rate,
        "stable_rating_rate": s_rate,
        "canary_ratings": rc,
        "stable_ratings": rs,
        "tolerance": cfg.rating_rate_tolerance,
    }
    if c_rate is None or s_rate is None:
        return Measurement(name, Outcome.INCONCLUSIVE, "no answers to compare yet", evidence)
    differs = bool(rating_rate_verdicts(rc, ac, rs, as_, cfg, levels)[()])
    numbers = f"canary students rate {c_rate:.1%} of answers, stable students {s_rate:.1%}"
    if differs:
        reason = f"rating rates differ: {numbers}; mean ratings may be biased"
        return Measurement(name, Outcome.FAIL, reason, evidence)
    return Measurement(name, Outcome.PASS, f"rating rates alike: {numbers}", evidence)


# -- the verdict -----------------------------------------------------------------
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


def analyse(
    canary: StatsInput, stable: StatsInput, cfg: RolloutSettings, stage: Stage | None = None
) -> Analysis:
    """Run every check: any error gives ``ERROR``, else any fail ``FAIL``, all pass ``PASS``.

    Errors win over failures on purpose: a verdict drawn from stats that are
    partly unreadable could roll back a healthy canary. With the ``stage``
    (its weight and rollback confidence) the sample-ratio guard runs too;
    acting on the guards is :func:`tara.rollout.decide.step`'s business.
    """
    problem = stats_problem(canary)
    if problem is not None or not isinstance(canary, WindowStats):
        return Analysis(Outcome.ERROR, f"canary: {problem}")
    problem = stats_problem(stable)
    if problem is not None or not isinstance(stable, WindowStats):
        return Analysis(Outcome.ERROR, f"stable: {problem}")
    c, s, levels = canary, stable, Levels.of(cfg, stage)
    measurements = tuple(
        _measure(check.__name__, partial(check, c, s, cfg, levels)) for check in CHECKS
    )
    guards = [_measure("check_rating_rate", lambda: check_rating_rate(c, s, cfg, levels))]
    if stage is not None:
        weight = stage.weight_bp
        srm = _measure("check_sample_ratio", lambda: check_sample_ratio(c, s, weight, cfg, levels))
        guards.insert(0, srm)
    for outcome in (Outcome.ERROR, Outcome.FAIL):
        hits = [m.reason for m in measurements if m.outcome is outcome]
        if hits:
            return Analysis(outcome, "; ".join(hits), measurements, tuple(guards))
    waiting = [m.reason for m in measurements if m.outcome is not Outcome.PASS]
    if waiting:
        return Analysis(Outcome.INCONCLUSIVE, "; ".join(waiting), measurements, tuple(guards))
    return Analysis(Outcome.PASS, "every check within its limit", measurements, tuple(guards))


def _measure(name: str, check: Callable[[], Measurement]) -> Measurement:
    """Run one check; malformed stats it trips over become an ``ERROR`` measurement."""
    try:
        return check()
    except _CHECK_BUGS as exc:
        reason = f"{name} could not read the stats: {type(exc).__name__}: {exc}"
        return Measurement(name, Outcome.ERROR, reason)
