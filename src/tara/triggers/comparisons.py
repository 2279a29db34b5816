"""How far one group falls behind another, as a one-sided lower confidence bound.

The language rules compare a language's ratings (and ``language`` complaints)
in a subject with the same subject in the other languages. A raw difference
of two means says nothing about noise; these functions answer "with this
confidence, the gap is at least ...", so a rule fires on the bound, never on
a lucky draw:

- :func:`mean_gap_lower` — Welch's normal interval for the difference of two
  mean ratings, with each group's variance read off its 1–5 histogram (the
  rules demand ≥ 30 ratings per group, where the normal approximation of a
  bounded variable holds);
- :func:`share_gap_lower` — Newcombe's hybrid score interval (method 10,
  Newcombe 1998) for the difference of two proportions, built from Wilson
  intervals, which stays honest with a handful of events where the plain
  Wald interval does not.

``z`` is the one-sided critical value: :func:`critical_z` spreads the error
rate over ``comparisons`` (Bonferroni), so checking nine language×subject
pairs at 99% still holds 99% for the check as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist


def critical_z(confidence: float, comparisons: int = 1) -> float:
    """One-sided critical value at ``confidence``, Bonferroni-split over ``comparisons``."""
    alpha = (1.0 - confidence) / max(1, comparisons)
    return NormalDist().inv_cdf(1.0 - alpha)


def mean_var(histogram: Sequence[int]) -> tuple[float, float]:
    """Mean and (sample) variance of ratings given as counts of 1, 2, ... stars."""
    n = sum(histogram)
    mean = sum((i + 1) * c for i, c in enumerate(histogram)) / n
    square = sum(c * (i + 1 - mean) ** 2 for i, c in enumerate(histogram))
    return mean, square / (n - 1) if n > 1 else 0.0


def mean_gap_lower(behind: Sequence[int], ahead: Sequence[int], z: float) -> float:
    """Lower bound of ``mean(ahead) - mean(behind)`` (ratings histograms, both non-empty)."""
    m1, v1 = mean_var(behind)
    m2, v2 = mean_var(ahead)
    se = math.sqrt(v1 / sum(behind) + v2 / sum(ahead))
    return (m2 - m1) - z * se


def wilson(events: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion ``events / n`` (``n`` > 0)."""
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def share_gap_lower(behind: tuple[int, int], ahead: tuple[int, int], z: float) -> float:
    """Lower bound of ``share(behind) - share(ahead)``, each ``(events, n)`` with ``n`` > 0.

    Here *behind* has the larger share of complaints; Newcombe's interval
    subtracts each group's Wilson distance on the side that narrows the gap.
    """
    (x1, n1), (x2, n2) = behind, ahead
    p1, p2 = x1 / n1, x2 / n2
    low1, _ = wilson(x1, n1, z)
    _, high2 = wilson(x2, n2, z)
    return (p1 - p2) - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
