"""Window stats: what one variant of one segment did during a time bucket.

A :class:`WindowStats` is a bag of additive counters (requests, errors by
class, fixed-bucket latency and TTFT histograms, rating distribution,
relevance, tags, user retries, tokens). Being additive, stats from many
replicas and many time buckets merge by summing, and they map one-to-one to
the flat field/number form that a Redis hash stores (``HINCRBY`` per field).
A replaced rating is a delta with ``-1`` on the old value and ``+1`` on the new.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tara.telemetry import window_fields as wf
from tara.telemetry.quantiles import count_above, histogram_quantile
from tara.telemetry.window_fields import Family, member, split

LATENCY_BOUNDS: tuple[float, ...] = tuple(round(0.005 * 1.25**i, 6) for i in range(50))
"""Upper bounds (seconds) of the latency/TTFT histogram buckets: 5 ms to ~280 s,
each 25% wider than the last, plus one overflow bucket."""

ERROR_CLASSES = ("timeout", "connection", "rate_limited", "upstream", "gateway")
"""Why a request failed: upstream timeout, connection failure, 429, 5xx, our own bug."""

NEGATIVE_RATING = 2
"""Ratings at or below this count as negative feedback."""


def latency_bucket(seconds: float) -> int:
    """Index of the histogram bucket that holds ``seconds``."""
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


def _empty_hist() -> list[int]:
    return [0] * (len(LATENCY_BOUNDS) + 1)


@dataclass(slots=True)
class WindowStats:
    """Additive counters for one (track, segment, variant) over some time."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: list[int] = field(default_factory=_empty_hist)
    latency_sum: float = 0.0
    ttft: list[int] = field(default_factory=_empty_hist)
    ratings: list[int] = field(default_factory=lambda: [0] * 5)
    relevance_sum: float = 0.0
    relevance_count: int = 0
    tags: dict[str, int] = field(default_factory=dict)
    user_retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    # -- derived numbers -------------------------------------------------
    @property
    def error_count(self) -> int:
        """Failed requests of every class."""
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float | None:
        """Failed / all requests, or ``None`` without requests."""
        return self.error_count / self.requests if self.requests else None

    @property
    def rating_count(self) -> int:
        """How many ratings (each request counts once, the latest rating wins)."""
        return sum(self.ratings)

    @property
    def rating_mean(self) -> float | None:
        """Mean rating 1..5, or ``None`` without ratings."""
        n = self.rating_count
        return sum((i + 1) * c for i, c in enumerate(self.ratings)) / n if n else None

    @property
    def negative_ratings(self) -> int:
        """Ratings of 1 or 2."""
        return sum(self.ratings[:NEGATIVE_RATING])

    @property
    def relevance_mean(self) -> float | None:
        """Mean reported relevance 0..1, or ``None``."""
        return self.relevance_sum / self.relevance_count if self.relevance_count else None

    @property
    def answered(self) -> int:
        """Requests that got an answer (not an error)."""
        return self.requests - self.error_count

    @property
    def tokens_per_answer(self) -> float | None:
        """Completion tokens per successful answer."""
        return self.completion_tokens / self.answered if self.answered > 0 else None

    def latency_quantile(self, q: float) -> float | None:
        """The ``q`` quantile of latency, seconds (:mod:`tara.telemetry.quantiles`)."""
        return histogram_quantile(self.latency, LATENCY_BOUNDS, q)

    def ttft_quantile(self, q: float) -> float | None:
        """The ``q`` quantile of time to first token, seconds (:mod:`tara.telemetry.quantiles`)."""
        return histogram_quantile(self.ttft, LATENCY_BOUNDS, q)

    def slower_than(self, seconds: float) -> float:
        """How many answers took longer than ``seconds`` (bucket split as for quantiles)."""
        return count_above(self.latency, LATENCY_BOUNDS, seconds)

    # -- combination -----------------------------------------------------
    def merge(self, other: WindowStats) -> WindowStats:
        """Add ``other`` into this object in place and return it."""
        self.add_fields(other.to_fields())
        return self

    @classmethod
    def merged(cls, parts: Iterable[WindowStats]) -> WindowStats:
        """Sum of many stats."""
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    # -- flat field form (Redis hash) ------------------------------------
    def to_fields(self) -> dict[str, float]:
        """Non-zero counters as ``{field: number}``."""
        out: dict[str, float] = {}

        def put(name: str, value: float) -> None:
            if value:
                out[name] = value

        put(wf.REQUESTS, self.requests)
        for cls_, n in self.errors.items():
            put(member(Family.ERROR, cls_), n)
        for i, n in enumerate(self.latency):
            put(member(Family.LATENCY, i), n)
        put(wf.LATENCY_SUM, self.latency_sum)
        for i, n in enumerate(self.ttft):
            put(member(Family.TTFT, i), n)
        for i, n in enumerate(self.ratings):
            put(member(Family.RATING, i + 1), n)
        put(wf.RELEVANCE_SUM, self.relevance_sum)
        put(wf.RELEVANCE_COUNT, self.relevance_count)
        for tag, n in self.tags.items():
            put(member(Family.TAG, tag), n)
        put(wf.USER_RETRIES, self.user_retries)
        put(wf.PROMPT_TOKENS, self.prompt_tokens)
        put(wf.COMPLETION_TOKENS, self.completion_tokens)
        return out

    def add_fields(self, fields: Mapping[str, float]) -> None:
        """Add a flat field mapping (as from :meth:`to_fields` or Redis) into this object.

        Zero fields are skipped: a counter that went ``+1`` then ``-1`` in two
        flushes (a replaced rating's tag) stays in a Redis hash as 0, and is
        no tag or error class at all.
        """
        for name, value in fields.items():
            if value:
                self._add_field(name, value)

    def _add_field(self, name: str, value: float) -> None:  # noqa: C901 - a flat dispatch
        kind, arg = split(name)
        n = int(value)
        if kind == wf.REQUESTS:
            self.requests += n
        elif kind == Family.ERROR:
            self.errors[arg] = self.errors.get(arg, 0) + n
        elif kind == Family.LATENCY:
            self.latency[int(arg)] += n
        elif kind == wf.LATENCY_SUM:
            self.latency_sum += float(value)
        elif kind == Family.TTFT:
            self.ttft[int(arg)] += n
        elif kind == Family.RATING:
            self.ratings[int(arg) - 1] += n
        elif kind == wf.RELEVANCE_SUM:
            self.relevance_sum += float(value)
        elif kind == wf.RELEVANCE_COUNT:
            self.relevance_count += n
        elif kind == Family.TAG:
            self.tags[arg] = self.tags.get(arg, 0) + n
        elif kind == wf.USER_RETRIES:
            self.user_retries += n
        elif kind == wf.PROMPT_TOKENS:
            self.prompt_tokens += n
        elif kind == wf.COMPLETION_TOKENS:
            self.completion_tokens += n
        # Unknown fields come from a newer writer; ignoring them keeps old readers working.

    @classmethod
    def from_fields(cls, fields: Mapping[str, float]) -> WindowStats:
        """Build stats from a flat field mapping."""
        stats = cls()
        stats.add_fields(fields)
        return stats
