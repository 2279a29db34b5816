"""Window stats: what one variant of one segment did during a time bucket.

A :class:`WindowStats` is a bag of additive counters (requests, errors by
class, fixed-bucket latency and TTFT histograms, rating distribution,
relevance, tags, user retries, tokens). Being additive, stats from many
replicas and many time buckets merge by summing, and they map one-to-one to
the flat field/number form that a Redis hash stores (``HINCRBY`` per field).
A replaced rating is a delta with ``-1`` on the old value and ``+1`` on the new.

Distinct students are not additive: a delta names each student it saw as a
``stu:<student hash>`` field, and a store keeps those per bucket as a
:class:`StudentSketch` (memory) or a HyperLogLog (Redis), whose union over the
buckets read is :attr:`WindowStats.students`. Sample-ratio checks compare it
with the canary's weight; :attr:`WindowStats.unidentified` (requests without a
student id, always served by stable) and :attr:`WindowStats.fallbacks` (stable
answers to canary requests that failed) say what in stable's request count is
not stable's own share.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

LATENCY_BOUNDS: tuple[float, ...] = tuple(round(0.005 * 1.25**i, 6) for i in range(50))
"""Upper bounds (seconds) of the latency/TTFT histogram buckets: 5 ms to ~280 s,
each 25% wider than the last, plus one overflow bucket."""

ERROR_CLASSES = ("timeout", "connection", "rate_limited", "upstream", "gateway")
"""Why a request failed: upstream timeout, connection failure, 429, 5xx, our own bug."""

NEGATIVE_RATING = 2
"""Ratings at or below this count as negative feedback."""

STUDENT_FIELD = "stu:"
"""Prefix of the delta fields that name a student seen in a bucket (value ignored)."""


def latency_bucket(seconds: float) -> int:
    """Index of the histogram bucket that holds ``seconds``."""
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


def _quantile(hist: list[int], q: float) -> float | None:
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= rank and count:
            return LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else math.inf
    return math.inf  # pragma: no cover - unreachable with a non-empty histogram


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
    unidentified: int = 0
    """Requests without a student id (routing sends them all to stable)."""
    fallbacks: int = 0
    """Stable answers to canary requests that failed (also counted in ``requests``)."""
    students: int | None = None
    """Distinct students seen, estimated (a union, not a sum, over buckets); ``None``
    where the source does not count them (Prometheus)."""

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
        """Upper bound of the bucket holding the ``q`` quantile of latency."""
        return _quantile(self.latency, q)

    def ttft_quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the ``q`` quantile of TTFT."""
        return _quantile(self.ttft, q)

    # -- combination -----------------------------------------------------
    def merge(self, other: WindowStats) -> WindowStats:
        """Add ``other`` into this object in place and return it.

        Distinct students add up too, which is right for disjoint series (two
        variants, two segments) and an upper bound for one series over time.
        """
        self.add_fields(other.to_fields())
        if other.students is not None:
            self.students = (self.students or 0) + other.students
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

        put("req", self.requests)
        for cls_, n in self.errors.items():
            put(f"err:{cls_}", n)
        for i, n in enumerate(self.latency):
            put(f"lat:{i}", n)
        put("lat_sum", self.latency_sum)
        for i, n in enumerate(self.ttft):
            put(f"ttft:{i}", n)
        for i, n in enumerate(self.ratings):
            put(f"rat:{i + 1}", n)
        put("rel_sum", self.relevance_sum)
        put("rel_n", self.relevance_count)
        for tag, n in self.tags.items():
            put(f"tag:{tag}", n)
        put("uretry", self.user_retries)
        put("tok_in", self.prompt_tokens)
        put("tok_out", self.completion_tokens)
        put("anon", self.unidentified)
        put("fb", self.fallbacks)
        return out

    def add_fields(self, fields: Mapping[str, float]) -> None:
        """Add a flat field mapping (as from :meth:`to_fields` or Redis) into this object."""
        for name, value in fields.items():
            self._add_field(name, value)

    def _add_field(self, name: str, value: float) -> None:  # noqa: C901 - a flat dispatch
        kind, _, arg = name.partition(":")
        n = int(value)
        if kind == "req":
            self.requests += n
        elif kind == "err":
            self.errors[arg] = self.errors.get(arg, 0) + n
        elif kind == "lat":
            self.latency[int(arg)] += n
        elif kind == "lat_sum":
            self.latency_sum += float(value)
        elif kind == "ttft":
            self.ttft[int(arg)] += n
        elif kind == "rat":
            self.ratings[int(arg) - 1] += n
        elif kind == "rel_sum":
            self.relevance_sum += float(value)
        elif kind == "rel_n":
            self.relevance_count += n
        elif kind == "tag":
            self.tags[arg] = self.tags.get(arg, 0) + n
        elif kind == "uretry":
            self.user_retries += n
        elif kind == "tok_in":
            self.prompt_tokens += n
        elif kind == "tok_out":
            self.completion_tokens += n
        elif kind == "anon":
            self.unidentified += n
        elif kind == "fb":
            self.fallbacks += n
        # Student names (``stu:``) are kept by the stores as a sketch, never summed here.
        # Unknown fields come from a newer writer; ignoring them keeps old readers working.

    @classmethod
    def from_fields(cls, fields: Mapping[str, float]) -> WindowStats:
        """Build stats from a flat field mapping."""
        stats = cls()
        stats.add_fields(fields)
        return stats


class StudentSketch:
    """Distinct students of a bucket: exact while few, then a HyperLogLog.

    The Redis store uses Redis's own HyperLogLog (``PFADD``/``PFCOUNT``); this
    one serves the memory store with the same precision: 2**14 registers, a
    standard error of 0.81%. Up to :attr:`EXACT_UP_TO` names it keeps their
    64-bit hashes and counts exactly. Sketches merge by union.
    """

    __slots__ = ("_hashes", "_registers")

    PRECISION = 14
    EXACT_UP_TO = 256

    def __init__(self) -> None:
        self._hashes: set[int] | None = set()
        self._registers: np.ndarray[tuple[int], np.dtype[np.uint8]] | None = None

    @staticmethod
    def hash(name: str) -> int:
        """The 64-bit hash a name is counted by."""
        digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def add(self, name: str) -> None:
        """Count ``name`` (again is harmless)."""
        self._add_hash(self.hash(name))

    def _add_hash(self, h: int) -> None:
        if self._hashes is not None:
            self._hashes.add(h)
            if len(self._hashes) > self.EXACT_UP_TO:
                self._densify()
            return
        assert self._registers is not None
        rest_bits = 64 - self.PRECISION
        rest = h & ((1 << rest_bits) - 1)
        rank = rest_bits - rest.bit_length() + 1
        index = h >> rest_bits
        if rank > self._registers[index]:
            self._registers[index] = rank

    def _densify(self) -> None:
        hashes, self._hashes = self._hashes or set(), None
        self._registers = np.zeros(1 << self.PRECISION, dtype=np.uint8)
        for h in hashes:
            self._add_hash(h)

    def merge(self, other: StudentSketch) -> None:
        """Add every student of ``other`` into this sketch."""
        if other._hashes is not None:
            for h in other._hashes:
                self._add_hash(h)
            return
        if self._registers is None:
            self._densify()
        assert self._registers is not None
        assert other._registers is not None
        np.maximum(self._registers, other._registers, out=self._registers)

    def count(self) -> int:
        """Distinct students added, exact up to :attr:`EXACT_UP_TO`, estimated beyond."""
        if self._hashes is not None:
            return len(self._hashes)
        assert self._registers is not None
        m = self._registers.size
        zeros = int(np.count_nonzero(self._registers == 0))
        if zeros:
            linear = m * math.log(m / zeros)  # small counts: linear counting is more exact
            if linear <= 2.5 * m:
                return round(linear)
        harmonic = float(np.sum(np.exp2(-self._registers.astype(np.float64))))
        return round(0.7213 / (1 + 1.079 / m) * m * m / harmonic)
