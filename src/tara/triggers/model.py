"""What the trigger rules read and what they say: scopes, observations, results.

A :class:`Observations` is a snapshot of telemetry for the current and the
previous period, already summed into :class:`~tara.telemetry.windows.WindowStats`
per language×subject (and into :class:`CellStats` per grade and topic within
one); rules read it and never do I/O. A :class:`TriggerResult` is one rule's
verdict on one scope: the number it compared, the threshold, the sample size
and its minimum, the time window, and the evidence.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tara.telemetry.windows import WindowStats


class Firing(enum.StrEnum):
    """What one rule said about one scope."""

    FIRED = "fired"
    OK = "ok"
    """Looked and did not fire."""
    INSUFFICIENT = "insufficient"
    """Too little data to say either."""


Dimension = Literal["subject", "language", "grade"]
"""What a business-event rule looks for new values of."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What a trigger is about: a track, a language×subject (or a grade or topic in one),
    a value new in traffic, or everything."""

    track: str | None = None
    language: str | None = None
    subject: str | None = None
    grade: str | None = None
    topic: str | None = None

    @property
    def key(self) -> str:
        """Stable text form (``language=hi,subject=math``; ``*`` for everything)."""
        return ",".join(f"{name}={value}" for name, value in self.as_json().items()) or "*"

    def __lt__(self, other: Scope) -> bool:
        # A missing value sorts first; comparing None with a str would raise.
        return self._sort_key() < other._sort_key()

    def _sort_key(self) -> tuple[tuple[bool, str], ...]:
        values = (self.track, self.language, self.subject, self.grade, self.topic)
        return tuple((v is not None, v or "") for v in values)

    def as_json(self) -> dict[str, str]:
        """The set fields only, in key order (track, language, subject, grade, topic)."""
        fields = (
            ("track", self.track),
            ("language", self.language),
            ("subject", self.subject),
            ("grade", self.grade),
            ("topic", self.topic),
        )
        return {name: value for name, value in fields if value is not None}

    @property
    def run_scope(self) -> Scope:
        """The scope a fine-tuning run for this one covers: a topic's language×subject
        (runs train language×subjects, not topics), else the scope itself."""
        return self if self.topic is None else dataclasses.replace(self, topic=None)


EVERYTHING = Scope()


@dataclass(frozen=True, slots=True)
class Window:
    """The time the data behind a result covers: ``[start, end)``, and for a rule that
    compares two periods, the earlier one ``[previous_start, start)``."""

    start: float
    end: float
    previous_start: float | None = None

    def as_json(self) -> dict[str, float]:
        """Unix seconds; ``previous_start`` only when there is a previous period."""
        out = {"start": self.start, "end": self.end}
        if self.previous_start is not None:
            out["previous_start"] = self.previous_start
        return out


@dataclass(frozen=True, slots=True)
class TriggerResult:
    """One rule's verdict on one scope: the value it compared, against which threshold."""

    name: str
    fired: bool
    scope: Scope
    value: float | None
    """The measured number (``None`` when there was nothing to measure)."""
    threshold: float
    op: str
    """How ``value`` is compared with ``threshold`` to fire (``<``, ``>``, ``>=``)."""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    """Sample sizes and the inputs behind ``value``, for the report."""
    enough_data: bool = True
    """False when a minimum sample size was not reached (then ``fired`` is false)."""
    sample: int | None = None
    """The sample size the minimum applies to (the smaller period's, comparing two);
    ``None`` for a rule without one (calendar, data volume)."""
    min_sample: int | None = None
    """The rule's minimum for ``sample``: below it the rule cannot fire."""
    window: Window | None = None
    """The time the data covers (``None`` for calendar rules)."""

    @property
    def outcome(self) -> Firing:
        """``fired``, ``ok`` or ``insufficient``."""
        if self.fired:
            return Firing.FIRED
        return Firing.OK if self.enough_data else Firing.INSUFFICIENT

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "trigger": self.name,
            "outcome": self.outcome,
            "fired": self.fired,
            "scope": self.scope.as_json(),
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "enough_data": self.enough_data,
            "sample": self.sample,
            "min_sample": self.min_sample,
            "window": None if self.window is None else self.window.as_json(),
            "evidence": dict(self.evidence),
        }


@dataclass(slots=True)
class CellStats:
    """One grade's or topic's numbers within a language×subject in the period."""

    requests: int = 0
    user_retries: int = 0
    ratings: int = 0
    rating_sum: int = 0
    flagged: int = 0
    """Ratings carrying a knowledge-gap tag (``triggers.gap_tags``: ``wrong``, ``irrelevant``)."""
    derived: int = 0
    """Requests whose topic was derived from the question rather than named by the app."""
    evictions: int = 0
    """For an ``other`` cell: how often a topic or grade lost its cell to the bound and its
    numbers moved here (not added up by :meth:`merge`)."""

    @property
    def rating_mean(self) -> float | None:
        """Mean rating, or ``None`` without ratings."""
        return self.rating_sum / self.ratings if self.ratings else None

    @property
    def flagged_share(self) -> float | None:
        """Share of ratings carrying a knowledge-gap tag."""
        return self.flagged / self.ratings if self.ratings else None

    def merge(self, other: CellStats) -> None:
        """Add ``other`` into this cell."""
        self.requests += other.requests
        self.user_retries += other.user_retries
        self.ratings += other.ratings
        self.rating_sum += other.rating_sum
        self.flagged += other.flagged
        self.derived += other.derived


@dataclass(slots=True)
class Observations:
    """Telemetry of the current period ``[now - period, now)`` and the one before it."""

    now: float
    period: float
    current: dict[Scope, WindowStats] = field(default_factory=dict)
    """Per language×subject (``Scope(language=..., subject=...)``), current period."""
    previous: dict[Scope, WindowStats] = field(default_factory=dict)
    """Per language×subject, previous period."""
    tracks_current: dict[str, WindowStats] = field(default_factory=dict)
    """Per track, current period (latency)."""
    tracks_previous: dict[str, WindowStats] = field(default_factory=dict)
    """Per track, previous period."""
    topics: dict[Scope, CellStats] = field(default_factory=dict)
    """Per topic of a language×subject (``Scope(language, subject, topic=...)``), current
    period; at most ``triggers.max_topics_per_segment`` per language×subject plus ``other``."""
    grades: dict[Scope, CellStats] = field(default_factory=dict)
    """Per grade of a language×subject (``Scope(language, subject, grade=...)``), current
    period; at most ``triggers.max_grades_per_segment`` plus ``other``."""
    high_quality: dict[Scope, int] = field(default_factory=dict)
    """Per language×subject: high-quality interactions since the scope's last run."""
    volume_since: dict[Scope, float] = field(default_factory=dict)
    """Per language×subject: when its high-quality count starts."""
    seen_current: dict[Dimension, Counter[str]] = field(default_factory=dict)
    """Requests per subject, language and grade value in the current period."""
    seen_previous: dict[Dimension, Counter[str]] = field(default_factory=dict)
    """Requests per subject, language and grade value in the previous period."""
    stable_models: dict[str, str] = field(default_factory=dict)
    """Per track: the model serving stable now."""
    listed_models: frozenset[str] | None = None
    """Model ids the training backend lists (None: it lists none, or could not)."""

    def stats(self, scope: Scope, *, previous: bool = False) -> WindowStats:
        """The scope's stats in a period (empty when it saw nothing)."""
        table = self.previous if previous else self.current
        return table.get(scope) or WindowStats()
