"""What the trigger rules read and what they say: scopes, observations, results.

A :class:`Observations` is a snapshot of telemetry for the current and the
previous period, already summed into :class:`~tara.telemetry.windows.WindowStats`
per scope; rules read it and never do I/O. A :class:`TriggerResult` is one
rule's verdict on one scope, with the number it compared and the evidence.
"""

from __future__ import annotations

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
    """What a trigger is about: a track, a language×subject, a grade, or everything."""

    track: str | None = None
    language: str | None = None
    subject: str | None = None
    grade: str | None = None

    @property
    def key(self) -> str:
        """Stable text form (``language=hi,subject=math``; ``*`` for everything)."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("track", self.track),
                ("language", self.language),
                ("subject", self.subject),
                ("grade", self.grade),
            )
            if value is not None
        ]
        return ",".join(parts) or "*"

    def __lt__(self, other: Scope) -> bool:
        # A missing value sorts first; comparing None with a str would raise.
        return self._sort_key() < other._sort_key()

    def _sort_key(self) -> tuple[tuple[bool, str], ...]:
        values = (self.track, self.language, self.subject, self.grade)
        return tuple((v is not None, v or "") for v in values)

    def as_json(self) -> dict[str, str]:
        """The set fields only."""
        return {
            name: value
            for name, value in (
                ("track", self.track),
                ("language", self.language),
                ("subject", self.subject),
                ("grade", self.grade),
            )
            if value is not None
        }


EVERYTHING = Scope()


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
            "evidence": dict(self.evidence),
        }


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
    high_quality: dict[Scope, int] = field(default_factory=dict)
    """Per language×subject: high-quality interactions since the scope's last run."""
    volume_since: dict[Scope, float] = field(default_factory=dict)
    """Per language×subject: when its high-quality count starts."""
    seen_current: dict[Dimension, Counter[str]] = field(default_factory=dict)
    """Requests per subject, language and grade value in the current period."""
    seen_previous: dict[Dimension, Counter[str]] = field(default_factory=dict)
    """Requests per subject, language and grade value in the previous period."""

    def stats(self, scope: Scope, *, previous: bool = False) -> WindowStats:
        """The scope's stats in a period (empty when it saw nothing)."""
        table = self.previous if previous else self.current
        return table.get(scope) or WindowStats()
