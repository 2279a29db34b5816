"""Per-request Prometheus updates as plain numbers, folded into the metrics when read.

prometheus_client takes a lock for every increment, and a histogram finds
its bucket in a Python loop: a request's counter and three observations cost
~50,000 instructions, about as much as parsing it. The gateway's hot path
instead adds to a :class:`CounterTally` or :class:`HistogramTally` (an
addition, or a bisect and two: the recorder's share of a request fell to
~16,000 instructions), and :class:`Folder`, registered before the metrics it
feeds, moves what they hold into the real children each time the registry is
collected: a scrape, ``generate_latest`` or ``get_sample_value``
sees every request recorded before it. What is exposed is unchanged, the
names, labels, buckets and ``_created`` series included.

Event-loop use only, like :class:`~tara.telemetry.metrics.InFlight`: the
tallies and the fold have no lock, and the gateway serves ``/metrics`` on the
loop that records.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric


class CounterTally:
    """Increments of one counter child not yet added to it."""

    __slots__ = ("child", "value")

    def __init__(self, child: Counter) -> None:
        self.child = child
        self.value = 0.0

    def add(self, amount: float) -> None:
        """Count ``amount`` more; refused when negative, as ``Counter.inc`` refuses it."""
        if amount < 0:
            msg = f"counters only go up; cannot add {amount}"
            raise ValueError(msg)
        self.value += amount

    def fold(self) -> None:
        """Add what was counted to the child."""
        if self.value:
            value, self.value = self.value, 0.0
            self.child.inc(value)


class HistogramTally:
    """Observations of one histogram child not yet added to it: a count per bucket and a sum.

    ``bounds`` are the child's upper bounds, ``+Inf`` last; an observation goes
    to the first bucket whose bound it does not exceed, as in ``observe``.
    """

    __slots__ = ("bounds", "child", "counts", "sum")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.bounds: tuple[float, ...] = tuple(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """One observation (the hot path inlines this; it is here for the rare callers)."""
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def fold(self) -> None:
        """Add what was observed to the child.

        prometheus_client has no public way to add n observations to one
        bucket, so this adds to the child's bucket and sum values directly;
        ``tests/telemetry/test_metric_tally.py`` checks the exposition
        against plain ``observe`` calls, so an upgrade that changes them fails there.
        """
        counts = self.counts
        if not any(counts):
            return
        buckets = self.child._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        total, self.sum = self.sum, 0.0
        self.child._sum.inc(total)


class Folder:
    """A collector that exposes nothing: collecting it folds the tallies into their metrics.

    Registered before the metrics it feeds, so a collection of the registry
    folds first and then reads them.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        tallies: Callable[[], Iterable[CounterTally | HistogramTally]],
    ) -> None:
        self._tallies = tallies
        registry.register(self)

    def fold(self) -> None:
        """Move every tally into its metric now."""
        for tally in self._tallies():
            tally.fold()

    def describe(self) -> list[Metric]:
        """No series of its own (and ``register`` need not collect it to learn that)."""
        return []

    def collect(self) -> list[Metric]:
        """Fold, expose nothing."""
        self.fold()
        return []
