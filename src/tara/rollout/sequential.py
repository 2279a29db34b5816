"""Anytime-valid confidence sequences: bounds that stay honest however often we look.

The controller re-analyses a canary every few minutes for days. A classical
95% interval checked at every look would be wrong far more than 5% of the
time; a *confidence sequence* holds at all looks at once (Ville's inequality
on a nonnegative martingale), so "the bound crossed the limit at some look"
keeps its error rate. Two are provided, both computed from counts alone:

* :func:`rate_bounds` — a proportion (error rate, share of slow requests):
  Robbins' beta-binomial mixture. ``M(p) = B(a+s, b+n-s) / B(a, b) / (p^s
  (1-p)^(n-s))`` is a martingale under the true ``p``; the sequence is every
  ``p`` with ``M(p) < 1/alpha``. Exact for any sample size; fractional
  counts are accepted (the latency test interpolates within buckets).
* :func:`normal_mixture_halfwidth` — a difference of means (ratings):
  the normal-mixture SPRT (mSPRT, as in Johari et al., "Always valid
  inference"), with the estimate's variance plugged in. It is valid as the
  estimate becomes normal, which is why callers require a minimum sample.
"""

from __future__ import annotations

import math

_MAX_NEWTON = 60


def _lbeta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def _softplus(theta: float) -> float:
    return max(theta, 0.0) + math.log1p(math.exp(-abs(theta)))


def _sigmoid(theta: float) -> float:
    if theta >= 0:
        return 1.0 / (1.0 + math.exp(-theta))
    z = math.exp(theta)
    return z / (1.0 + z)


def rate_log_evidence(s: float, n: float, p: float, prior_mean: float, strength: float) -> float:
    """Log of the beta-binomial mixture martingale against rate ``p`` after ``s`` of ``n``.

    At least ``log(1/alpha)`` means ``p`` is outside the ``1-alpha`` sequence.
    """
    if not 0.0 < p < 1.0:
        return math.inf if (p <= 0.0 < s) or (p >= 1.0 and s < n) else 0.0
    a, b = strength * prior_mean, strength * (1.0 - prior_mean)
    mixture = _lbeta(a + s, b + n - s) - _lbeta(a, b)
    return mixture - s * math.log(p) - (n - s) * math.log1p(-p)


def _upper(s: float, n: float, alpha: float, a: float, b: float) -> float:
    """Largest rate in the sequence: the right root of a convex function of logit(p)."""
    if n <= 0:
        return 1.0
    budget = math.log(1.0 / alpha) - (_lbeta(a + s, b + n - s) - _lbeta(a, b))
    if s >= n:
        return 1.0  # the evidence against p -> 1 stays below the budget
    p_hat = s / n
    # Start right of the root (f > 0) so Newton converges monotonically.
    p0 = min(p_hat + math.sqrt(2 * budget * max(p_hat, 1.0 / n) / n) + 2 * budget / n, 0.999999)
    theta = math.log(p0 / (1.0 - p0))

    def f(t: float) -> float:
        return n * _softplus(t) - s * t - budget

    while f(theta) <= 0:
        theta += 2.0
    for _ in range(_MAX_NEWTON):
        slope = n * _sigmoid(theta) - s
        step = f(theta) / slope
        theta -= step
        if step < 1e-9:
            break
    return _sigmoid(theta)


def rate_upper(s: float, n: float, alpha: float, prior_mean: float, strength: float) -> float:
    """Upper end of the ``1-alpha`` confidence sequence for a rate after ``s`` of ``n``."""
    a, b = strength * prior_mean, strength * (1.0 - prior_mean)
    return min(1.0, _upper(s, n, alpha, a, b))


def rate_lower(s: float, n: float, alpha: float, prior_mean: float, strength: float) -> float:
    """Lower end of the ``1-alpha`` confidence sequence for a rate after ``s`` of ``n``."""
    a, b = strength * prior_mean, strength * (1.0 - prior_mean)
    # By symmetry: the lower bound of p is one minus the upper bound of 1-p.
    return max(0.0, 1.0 - _upper(n - s, n, alpha, b, a))


def rate_bounds(
    s: float, n: float, alpha: float, prior_mean: float, strength: float
) -> tuple[float, float]:
    """``(lower, upper)`` of the ``1-alpha`` confidence sequence for a rate, ``s`` of ``n``."""
    return (
        rate_lower(s, n, alpha, prior_mean, strength),
        rate_upper(s, n, alpha, prior_mean, strength),
    )


def normal_mixture_halfwidth(variance: float, alpha: float, scale: float) -> float:
    """Half-width of the mSPRT confidence sequence for an estimate with this variance.

    ``scale`` is the prior's standard deviation on the effect: the sequence
    is tightest when the variance is near ``scale**2 / 8``.
    """
    if variance <= 0:
        return 0.0
    tau2 = scale * scale
    total = variance + tau2
    log_term = math.log(1.0 / alpha) + 0.5 * math.log(total / variance)
    return math.sqrt(2.0 * variance * total / tau2 * log_term)
