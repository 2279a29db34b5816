"""Quantiles (p95 and the like): the one way Tara computes them, from histograms or samples.

**Histograms** (window stats' latency and TTFT, which every rollout check,
report and trigger rule reads) hold counts per bucket: bucket ``i`` counts
values in ``(bounds[i-1], bounds[i]]`` (``[0, bounds[0]]`` for the first),
and one overflow bucket counts values above ``bounds[-1]``. The ``q``
quantile is read like this:

1. its rank is ``q · n`` for ``n`` counted values; the first bucket whose
   cumulative count reaches the rank holds it;
2. inside that bucket the values are taken to be spread evenly on a log
   scale (the bounds grow geometrically, 25% a bucket), linearly in the
   first bucket, which starts at zero;
3. in the overflow bucket nothing is known but "above the last bound", so
   the quantile is ``inf``.

So the estimate always lies in the bucket that holds the exact
(inverted-CDF) sample quantile, less than one bucket width (25%) away from
it, and for the smooth distributions latencies have it is within a few
percent; it is monotone in the counts. Reading the bucket's upper bound
instead would blur exactly the difference the rollout checks look for (a
2x-slower canary against a 2.5x one); a linear spread inside a geometric
bucket would lean every estimate towards the bucket's top.
:func:`count_above` is the same spread read the other way.
:func:`histogram_quantiles` and :func:`counts_above_many` are both, for many
histograms at once (one per row of an array: the rollout simulator reads
thousands per look); they agree with the one-histogram forms.

**Samples** (a list of raw values, e.g. offline-evaluation latencies):
linear interpolation between order statistics (Hyndman & Fan's type 7,
numpy's default): exact for the sample, no binning.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # numpy (~16 MiB of RSS) is imported by the many-histogram forms when first
    # called: the gateway reads one histogram at a time and never loads it.
    import numpy as np
    from numpy.typing import ArrayLike, NDArray


def _span(bounds: Sequence[float], i: int) -> tuple[float, float]:
    low = bounds[i - 1] if i > 0 else 0.0
    high = bounds[i] if i < len(bounds) else math.inf
    return low, high


def histogram_quantile(hist: Sequence[int], bounds: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 < q < 1) of a histogram over ``bounds``; ``None`` if it is empty.

    ``hist`` has ``len(bounds) + 1`` counts (the last one the overflow).
    ``inf`` when the quantile falls in the overflow bucket. See the module doc.
    """
    cumulative = list(itertools.accumulate(hist))
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    i = bisect.bisect_left(cumulative, rank)  # the first bucket reaching the rank
    low, high = _span(bounds, i)
    if math.isinf(high):
        return math.inf
    frac = (rank - (cumulative[i - 1] if i else 0)) / hist[i]
    if low == 0.0:
        return high * frac
    return float(low * (high / low) ** frac)


def count_above(hist: Sequence[int], bounds: Sequence[float], threshold: float) -> float:
    """How many counted values exceed ``threshold``, splitting its bucket the same way.

    Overflow values count only when the threshold is below the overflow
    bucket: beyond it nothing is known, so they are not called slower.
    """
    if threshold >= bounds[-1]:
        return 0.0
    i = bisect.bisect_left(bounds, threshold)
    low, high = _span(bounds, i)
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


def _edges(bounds: Sequence[float]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lower and upper edge of every bucket (the overflow's upper edge is ``inf``)."""
    import numpy as np

    return np.array((0.0, *bounds)), np.array((*bounds, math.inf))


def histogram_quantiles(
    hists: ArrayLike, bounds: Sequence[float], q: ArrayLike
) -> NDArray[np.float64]:
    """:func:`histogram_quantile` of each row of ``hists`` (``q`` per row or shared).

    ``nan`` for an empty row, ``inf`` in the overflow bucket.
    """
    import numpy as np

    h = np.atleast_2d(np.asarray(hists, dtype=np.float64))
    last = len(bounds)
    low_edge, high_edge = _edges(bounds)
    cumulative = np.cumsum(h, axis=1)
    total = cumulative[:, -1]
    rank = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0) * total
    i = np.minimum(np.sum(cumulative < rank[:, None], axis=1), last)
    rows = np.arange(h.shape[0])
    before = np.where(i > 0, cumulative[rows, np.maximum(i - 1, 0)], 0.0)
    inside = h[rows, i]
    frac = np.where(inside > 0, (rank - before) / np.where(inside > 0, inside, 1.0), 0.0)
    low, high = low_edge[i], high_edge[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(i == 0, high * frac, low * np.exp(frac * np.log(high / low)))
    value = np.where(i == last, math.inf, value)
    return np.where(total > 0, value, np.nan)


def counts_above_many(
    hists: ArrayLike, bounds: Sequence[float], thresholds: ArrayLike
) -> NDArray[np.float64]:
    """:func:`count_above` of each row of ``hists`` (a threshold per row or shared)."""
    import numpy as np

    h = np.atleast_2d(np.asarray(hists, dtype=np.float64))
    last = len(bounds)
    low_edge, high_edge = _edges(bounds)
    given = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), h.shape[:1])
    t = np.minimum(given, bounds[-1])
    i = np.searchsorted(np.asarray(bounds), t, side="left")
    rows = np.arange(h.shape[0])
    above = np.cumsum(h[:, ::-1], axis=1)[:, ::-1]  # above[:, k]: the counts from bucket k up
    after = np.where(i + 1 <= last, above[rows, np.minimum(i + 1, last)], 0.0)
    low, high = low_edge[i], high_edge[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(
            low == 0.0, (high - t) / high, np.log(high / np.maximum(t, low)) / np.log(high / low)
        )
    share = np.where(t > low, share, 1.0)
    return np.where(given >= bounds[-1], 0.0, h[rows, i] * share + after)


def sample_quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of raw values, interpolated between order statistics.

    ``None`` for no values. (Hyndman & Fan type 7: rank ``(n - 1) · q``.)
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
