"""Reading latency histograms between their bucket bounds.

:data:`~tara.telemetry.windows.LATENCY_BOUNDS` buckets are 25% wide, as
wide as the gap between the 2x limit and a 2.5x-slow canary, so reading
a quantile as its bucket's upper bound would blur exactly the difference
that matters. Inside a bucket we assume latencies spread evenly on a log
scale (linearly in the first bucket, which starts at zero); that is close
for smooth distributions and keeps every estimate monotone in the counts.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

from tara.telemetry.windows import LATENCY_BOUNDS

_LAST = len(LATENCY_BOUNDS)
"""Index of the overflow bucket (above the last bound)."""


def _span(i: int) -> tuple[float, float]:
    low = LATENCY_BOUNDS[i - 1] if i > 0 else 0.0
    high = LATENCY_BOUNDS[i] if i < _LAST else math.inf
    return low, high


def quantile(hist: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a latency histogram, interpolated; ``None`` if empty.

    ``inf`` when it falls in the overflow bucket.
    """
    cumulative = list(itertools.accumulate(hist))
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    i = bisect.bisect_left(cumulative, rank)  # the first bucket reaching the rank
    low, high = _span(i)
    if math.isinf(high):
        return math.inf
    frac = (rank - (cumulative[i - 1] if i else 0)) / hist[i]
    if low == 0.0:
        return high * frac
    return float(low * (high / low) ** frac)


def count_above(hist: Sequence[int], threshold: float) -> float:
    """How many observations exceed ``threshold``, splitting its bucket by interpolation.

    Overflow observations count only when the threshold is below the overflow
    bucket: beyond it nothing is known, so they are not called slow.
    """
    if threshold >= LATENCY_BOUNDS[-1]:
        return 0.0
    i = bisect.bisect_left(LATENCY_BOUNDS, threshold)
    low, high = _span(i)
    inside = hist[i]
    if inside and threshold > low:
        share = (
            (high - threshold) / high
            if low == 0.0
            else math.log(high / threshold) / math.log(high / low)
        )
    else:
        share = 1.0
    return inside * share + sum(hist[i + 1 :])
