"""Reading latency histograms between their bucket bounds.

:data:`~tara.telemetry.windows.LATENCY_BOUNDS` buckets are 25% wide, as
wide as the gap between the 2x limit and a 2.5x-slow canary, so reading
a quantile as its bucket's upper bound would blur exactly the difference
that matters. Inside a bucket we assume latencies spread evenly on a log
scale (linearly in the first bucket, which starts at zero); that is close
for smooth distributions and keeps every estimate monotone in the counts.

The array forms take one histogram per row (the simulator reads thousands
at once); :func:`quantile` and :func:`count_above` read one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tara.telemetry.windows import LATENCY_BOUNDS

Floats = NDArray[np.float64]

_LAST = len(LATENCY_BOUNDS)
"""Index of the overflow bucket (above the last bound)."""
_LOW = np.array((0.0, *LATENCY_BOUNDS))
"""Lower edge of each bucket (the overflow bucket's is the last bound)."""
_HIGH = np.array((*LATENCY_BOUNDS, math.inf))


def quantiles(hists: ArrayLike, q: ArrayLike) -> Floats:
    """The ``q`` quantile of each row, interpolated; ``nan`` if empty, ``inf`` in the overflow.

    ``q`` may differ per row (an array) and is clipped to ``[0, 1]``.
    """
    h = np.atleast_2d(np.asarray(hists, dtype=np.float64))
    cumulative = np.cumsum(h, axis=1)
    total = cumulative[:, -1]
    rank = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0) * total
    # The first bucket whose cumulative count reaches the rank.
    i = np.minimum(np.sum(cumulative < rank[:, None], axis=1), _LAST)
    rows = np.arange(h.shape[0])
    before = np.where(i > 0, cumulative[rows, np.maximum(i - 1, 0)], 0.0)
    inside = h[rows, i]
    frac = np.where(inside > 0, (rank - before) / np.where(inside > 0, inside, 1.0), 0.0)
    low, high = _LOW[i], _HIGH[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(i == 0, high * frac, low * np.exp(frac * np.log(high / low)))
    value = np.where(i == _LAST, math.inf, value)
    return np.where(total > 0, value, np.nan)


def counts_above(hists: ArrayLike, thresholds: ArrayLike) -> Floats:
    """How many observations of each row exceed its threshold, splitting that bucket.

    Overflow observations count only when the threshold is below the overflow
    bucket: beyond it nothing is known, so they are not called slow.
    """
    h = np.atleast_2d(np.asarray(hists, dtype=np.float64))
    given = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), h.shape[:1])
    t = np.minimum(given, LATENCY_BOUNDS[-1])
    i = np.searchsorted(np.asarray(LATENCY_BOUNDS), t, side="left")
    rows = np.arange(h.shape[0])
    above = np.cumsum(h[:, ::-1], axis=1)[:, ::-1]  # above[:, k] = sum of h[:, k:]
    after = np.where(i + 1 <= _LAST, above[rows, np.minimum(i + 1, _LAST)], 0.0)
    low, high = _LOW[i], _HIGH[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(
            low == 0.0, (high - t) / high, np.log(high / np.maximum(t, low)) / np.log(high / low)
        )
    share = np.where(t > low, share, 1.0)
    count = h[rows, i] * share + after
    return np.where(given >= LATENCY_BOUNDS[-1], 0.0, count)


def quantile(hist: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of one latency histogram, interpolated; ``None`` if empty.

    ``inf`` when it falls in the overflow bucket.
    """
    if not hist or sum(hist) <= 0:
        return None
    return float(quantiles([list(hist)], [q])[0])


def count_above(hist: Sequence[int], threshold: float) -> float:
    """How many observations of one histogram exceed ``threshold`` (see :func:`counts_above`)."""
    return float(counts_above([list(hist)], [threshold])[0])
