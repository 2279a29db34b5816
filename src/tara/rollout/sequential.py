"""Sequential tests that stay valid however often the controller looks.

The controller re-reads a canary's stats every few minutes for days and may
act on any look. A test applied afresh at every look would be wrong far more
often than its level; the tests here bound the chance of *ever* being wrong,
over every look at once. Two constructions, both working from counts alone
and on numpy arrays (the simulator runs thousands of rollouts at once):

* :class:`RateTest` — a rate against a fixed limit (error rate against 5%,
  share of slow requests against 5%). A group-sequential boundary: the
  fewest events among ``n`` requests that reject "the rate is within the
  limit". It is computed once per (limit, level, side) by dynamic
  programming over the binomial count, as if the controller looked after
  *every* request, spending the level along ``n`` (Lan and DeMets' alpha
  spending). Counts only grow, so a controller that looks less often can
  only reject less. Past :func:`horizon` requests the small reserve of the
  level goes to a mixture likelihood ratio, valid forever.
* Mixture likelihood ratios (e-processes) for nulls that move with the data
  (canary against stable, sample ratios, rating rates, mean ratings): a
  nonnegative supermartingale under the null exceeds ``1/alpha`` with
  probability at most ``alpha`` (Ville's inequality). A discrete mixture
  over a few alternatives beyond the null keeps them one-sided and cheap.

See ``docs/statistics.md`` for the design and its references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]

RATE_RATIOS = (1.25, 1.5, 2.0, 3.0, 5.0)
"""Alternatives of the rate mixtures, as odds ratios against the null."""

FAIL_SPENDING = ((0.25, 3.0, 0.05), (3.0, 12.0, 0.8), (12.0, math.inf, 0.15))
"""How a rollback boundary spends its level: ``(from, to, share)`` in events expected
at the limit. Most goes while they grow from 3 to 12 (60 to 240 requests at a 5%
limit), where a canary failing at twice the limit shows itself (240 requests tell 10%
from 5% with 95% power); a little before, so a canary that fails every request goes
at once; the rest, up to the horizon, keeps watching for smaller excesses."""
RESERVE = 0.05
"""Share of a boundary's level kept for the mixture that takes over past the horizon."""


def horizon(limit: float) -> int:
    """Requests up to which a boundary is computed exactly (the mixture takes over after)."""
    return int(min(max(1000.0 / min(limit, 1.0 - limit), 10_000.0), 100_000.0))


def _log_uniform(x: Floats, low: float, high: float) -> Floats:
    """0 below ``low``, 1 above ``high``, linear in ``log x`` between."""
    if high <= low:
        return (x >= low).astype(np.float64)
    with np.errstate(divide="ignore"):
        share = np.log(np.maximum(x, 1e-300) / low) / math.log(high / low)
    return np.clip(share, 0.0, 1.0)


def _spending(limit: float, fail: bool, cap: int) -> Floats:
    """Share of the exact part of the level spent by each ``n`` in ``0..cap``."""
    events = np.arange(cap + 1, dtype=np.float64) * limit
    if fail:
        spent = np.zeros(cap + 1)
        for low, high, share in FAIL_SPENDING:
            spent += share * _log_uniform(events, low, min(high, cap * limit))
        return spent
    # Passing has no hurry: spend evenly (in log n) from the first expected event on.
    return _log_uniform(events, 1.0, cap * limit)


def _upper_table(p: float, alpha: float, spent_by: Floats) -> NDArray[np.int64]:
    """``table[n]``: fewest events among ``n`` trials that cross the boundary.

    Exact: the chance that a Bernoulli(``p``) walk ever reaches ``table[n]``
    at any ``n`` up to the table's end is at most ``alpha * spent_by[-1]``.
    ``f`` holds the probability of each count among walks not yet stopped.
    """
    cap = spent_by.size - 1
    table = np.empty(cap + 1, dtype=np.int64)
    table[0] = 1
    f, low, spent, q = np.ones(1), 0, 0.0, 1.0 - p
    for n in range(1, cap + 1):
        g = np.empty(f.size + 1)
        g[0] = f[0] * q
        g[1:-1] = f[1:] * q + f[:-1] * p
        g[-1] = f[-1] * p
        tail = np.cumsum(g[::-1])  # tail[k]: mass of the top k + 1 counts
        k = int(np.searchsorted(tail, alpha * spent_by[n] - spent, side="right"))
        if k:
            spent += float(tail[k - 1])
            g = g[:-k]
        table[n] = low + g.size
        first = int(np.argmax(g > 1e-18))  # counts this unlikely never matter again
        if first:
            g, low = g[first:], low + first
        f = g
    return table


@lru_cache(maxsize=64)
def _table(limit: float, alpha: float, fail: bool) -> NDArray[np.int64]:
    cap = horizon(limit)
    spent_by = _spending(limit, fail, cap)
    exact = alpha * (1.0 - RESERVE)
    if fail:
        return _upper_table(limit, exact, spent_by)
    # "rate >= limit" rejected by few events is "successes >= ..." for the complement.
    n = np.arange(cap + 1)
    return n - _upper_table(1.0 - limit, exact, spent_by)


def _odds_alternatives(p0: Floats, ratios: tuple[float, ...], up: bool) -> Floats:
    odds = p0 / (1.0 - p0)
    r = np.asarray(ratios, dtype=np.float64)
    scaled = odds[..., None] * (r if up else 1.0 / r)
    return scaled / (1.0 + scaled)


def _logmeanexp(terms: Floats) -> Floats:
    top = np.max(terms, axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    return np.asarray(safe + np.log(np.mean(np.exp(terms - safe[..., None]), axis=-1)))


def rate_log_evidence(
    s: ArrayLike, n: ArrayLike, p0: ArrayLike, *, up: bool, ratios: tuple[float, ...] = RATE_RATIOS
) -> Floats:
    """Log of a mixture likelihood ratio against "rate <= ``p0``" (``up``) or ">= ``p0``".

    ``s`` events in ``n`` trials; the alternatives are ``p0``'s odds times (or,
    downwards, divided by) each of ``ratios``, equally weighted. Under the null
    its exponential is a nonnegative supermartingale starting at 1, so it
    reaches ``log(1/alpha)`` with probability at most ``alpha``.
    """
    s_ = np.asarray(s, dtype=np.float64)
    n_ = np.asarray(n, dtype=np.float64)
    p = np.clip(np.asarray(p0, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    q = _odds_alternatives(p, ratios, up)
    a = np.log(q / p[..., None])
    b = np.log1p(-q) - np.log1p(-p)[..., None]
    return _logmeanexp(s_[..., None] * a + (n_ - s_)[..., None] * b)


TAIL_STEP = 1.01
"""Past the horizon, boundaries are kept at sample sizes this far apart (and rounded to
the safe side in between)."""
TAIL_END = 10**10


@lru_cache(maxsize=64)
def _tail_table(limit: float, alpha: float, fail: bool) -> tuple[Floats, Floats]:
    """``(n, threshold)`` past the horizon: the mixture's boundary with the reserve.

    Found by bisection on the events at sample sizes :data:`TAIL_STEP` apart.
    The boundary rises with ``n`` on both sides, so reading it at the next
    sample size up (failing) or down (passing) only ever asks for more evidence.
    """
    cap = horizon(limit)
    steps = math.ceil(math.log(TAIL_END / cap) / math.log(TAIL_STEP)) + 1
    n = np.floor(cap * TAIL_STEP ** np.arange(steps))
    need = math.log(1.0 / (alpha * RESERVE))
    low, high = (n * limit, n) if fail else (np.zeros_like(n), n * limit)
    for _ in range(64):
        mid = (low + high) / 2
        hit = rate_log_evidence(mid, n, limit, up=fail) >= need
        if fail:
            high, low = np.where(hit, mid, high), np.where(hit, low, mid)
        else:
            low, high = np.where(hit, mid, low), np.where(hit, high, mid)
    return n, (np.ceil(high) if fail else np.floor(low))


def _tail_threshold(n: Floats, limit: float, alpha: float, fail: bool) -> Floats:
    grid, bound = _tail_table(limit, alpha, fail)
    if fail:  # the boundary at the next grid size up
        i = np.searchsorted(grid, n, side="left")
        return np.where(i < grid.size, bound[np.minimum(i, grid.size - 1)], np.inf)
    i = np.searchsorted(grid, n, side="right") - 1
    return bound[np.maximum(i, 0)]


@dataclass(frozen=True, slots=True)
class RateTest:
    """One side of a sequential test of a rate against ``limit`` at level ``alpha``.

    ``fail=True`` tests "the rate is at most ``limit``" and rejects when the
    events reach :meth:`threshold` (the canary is past the limit);
    ``fail=False`` tests "at least ``limit``" and rejects when the events are
    at most :meth:`threshold` (the canary is within it).
    """

    limit: float
    alpha: float
    fail: bool

    def threshold(self, n: ArrayLike) -> Floats:
        """Events that reject at ``n`` trials (at least this if ``fail``, else at most)."""
        n_ = np.asarray(n, dtype=np.float64)
        table = _table(self.limit, self.alpha, self.fail)
        cap = table.size - 1
        inside = table[np.clip(n_, 0, cap).astype(np.int64)].astype(np.float64)
        if not np.any(n_ > cap):
            return inside
        beyond = _tail_threshold(np.maximum(n_, cap), self.limit, self.alpha, self.fail)
        return np.where(n_ > cap, beyond, inside)

    def rejects(self, s: ArrayLike, n: ArrayLike) -> Bools:
        """Whether ``s`` events in ``n`` trials reject this side's null."""
        s_ = np.asarray(s, dtype=np.float64)
        bound = self.threshold(n)
        return s_ >= bound if self.fail else s_ <= bound


MEAN_DELTAS = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Alternatives of the mean mixtures, in multiples of the effect scale."""


def mean_log_evidence(excess: ArrayLike, variance: ArrayLike, scale: float) -> Floats:
    """Log of a mixture likelihood ratio that a mean difference lies beyond its null.

    ``excess`` is the estimate minus the null, signed towards the alternative;
    ``variance`` is the estimate's. For each alternative ``d`` (``scale`` times
    :data:`MEAN_DELTAS`) the Gaussian likelihood ratio is ``exp(d * excess / V
    - d**2 / (2 V))``: a martingale in information time ``1/V`` when the
    estimate moves like a Brownian motion, which sample means do as they grow
    (the test waits for a minimum sample for that reason).
    """
    e = np.asarray(excess, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    d = scale * np.asarray(MEAN_DELTAS)
    return _logmeanexp(d * e[..., None] / v[..., None] - d * d / (2.0 * v[..., None]))


def mean_margin(variance: float, alpha: float, scale: float) -> float:
    """How far beyond a null an estimate must lie for :func:`mean_log_evidence` to reject it.

    So ``estimate - margin`` and ``estimate + margin`` are the confidence
    sequence's bounds at level ``alpha``: a null outside them is rejected.
    """
    if variance <= 0:
        return 0.0
    need = math.log(1.0 / alpha)
    low, high = 0.0, 1.0
    while float(mean_log_evidence(high, variance, scale)) < need:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        if float(mean_log_evidence(mid, variance, scale)) >= need:
            high = mid
        else:
            low = mid
    return high
