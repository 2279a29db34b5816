"""The routing table and the pure function that routes one request.

The table maps each track to its stable model and the canaries running on
it, each scoped to a segment (subject and/or language). The gateway holds a
local copy and calls :func:`route` on every request; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tara.rollout.bucketing import BUCKETS, in_canary

Variant = Literal["stable", "canary"]
ALL = "all"
ANY = "*"


@dataclass(frozen=True, slots=True)
class Segment:
    """A slice of traffic: a subject, a language, both, or (neither) everything."""

    subject: str | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        # The label is parsed back and used inside ``:``-separated stats keys,
        # so "", "*" and ":" would make two segments share one label.
        for name, value in (("subject", self.subject), ("language", self.language)):
            if value is None:
                continue
            if not isinstance(value, str) or not value or value == ANY or ":" in value:
                msg = f"segment {name} must be a non-empty text without ':', not '*': {value!r}"
                raise ValueError(msg)

    def matches(self, subject: str | None, language: str | None) -> bool:
        """Whether a request with this context belongs to the segment."""
        return (self.subject is None or self.subject == subject) and (
            self.language is None or self.language == language
        )

    def overlaps(self, other: Segment) -> bool:
        """Whether some request could belong to both segments."""
        subject_ok = self.subject is None or other.subject is None or self.subject == other.subject
        language_ok = (
            self.language is None or other.language is None or self.language == other.language
        )
        return subject_ok and language_ok

    def contains(self, other: Segment) -> bool:
        """Whether every request of ``other`` also belongs to this segment."""
        return (self.subject is None or self.subject == other.subject) and (
            self.language is None or self.language == other.language
        )

    @property
    def label(self) -> str:
        """Stable text form used in metrics and stats keys: ``all``, ``math:hi``, ``*:ta``."""
        if self.subject is None and self.language is None:
            return ALL
        return f"{self.subject or ANY}:{self.language or ANY}"

    @classmethod
    def parse(cls, label: str) -> Segment:
        """Inverse of :attr:`label`."""
        if label == ALL:
            return cls()
        subject, _, language = label.partition(":")
        return cls(
            subject=None if subject in ("", ANY) else subject,
            language=None if language in ("", ANY) else language,
        )


@dataclass(frozen=True, slots=True)
class CanaryRoute:
    """One canary on a track: who sees it and how many.

    With ``stable_model`` set the route is a *pin* instead: a segment-scoped
    rollout succeeded, so ``stable_model`` is that segment's stable model
    for good; a pin sends nobody to a canary (its weight is 0).
    """

    rollout_id: str
    segment: Segment
    model: str
    salt: str
    weight_bp: int
    stable_model: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.weight_bp <= BUCKETS:
            msg = f"weight_bp must be within 0..{BUCKETS}, got {self.weight_bp}"
            raise ValueError(msg)
        if self.stable_model is not None and self.weight_bp != 0:
            msg = f"a pinned segment route has weight 0, got {self.weight_bp}"
            raise ValueError(msg)

    @property
    def pinned(self) -> bool:
        """Whether this route fixes its segment's stable model rather than running a canary."""
        return self.stable_model is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``stable_model`` only for pins, so older readers see no change."""
        data: dict[str, Any] = {
            "rollout_id": self.rollout_id,
            "subject": self.segment.subject,
            "language": self.segment.language,
            "model": self.model,
            "salt": self.salt,
            "weight_bp": self.weight_bp,
        }
        if self.stable_model is not None:
            data["stable_model"] = self.stable_model
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryRoute:
        """Inverse of :meth:`to_dict`."""
        stable = data.get("stable_model")
        return cls(
            rollout_id=str(data["rollout_id"]),
            segment=Segment(data.get("subject"), data.get("language")),
            model=str(data["model"]),
            salt=str(data["salt"]),
            weight_bp=int(data["weight_bp"]),
            stable_model=None if stable is None else str(stable),
        )


@dataclass(frozen=True, slots=True)
class TrackRoute:
    """A track's stable model and its canaries (on pairwise disjoint segments)."""

    stable_model: str
    canaries: tuple[CanaryRoute, ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Every track's routes, with a version that increases on each change."""

    version: int = 0
    tracks: Mapping[str, TrackRoute] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the one stored in the state store."""
        return {
            "version": self.version,
            "tracks": {
                name: {
                    "stable_model": tr.stable_model,
                    "canaries": [c.to_dict() for c in tr.canaries],
                }
                for name, tr in self.tracks.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingTable:
        """Inverse of :meth:`to_dict`; raises ``KeyError``/``ValueError``/``TypeError``."""
        tracks = {
            str(name): TrackRoute(
                stable_model=str(tr["stable_model"]),
                canaries=tuple(CanaryRoute.from_dict(c) for c in tr.get("canaries", ())),
            )
            for name, tr in data["tracks"].items()
        }
        return cls(version=int(data["version"]), tracks=tracks)

    def with_defaults(self, stable_models: Mapping[str, str]) -> RoutingTable:
        """Add configured tracks that the stored table does not know yet."""
        missing = {t: TrackRoute(m) for t, m in stable_models.items() if t not in self.tracks}
        if not missing:
            return self
        return RoutingTable(self.version, {**missing, **self.tracks})


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes."""

    variant: Variant
    model: str
    segment: str
    rollout_id: str | None


def route(
    table: RoutingTable,
    track: str,
    student_id: str | None,
    subject: str | None,
    language: str | None,
) -> Route | None:
    """Route a request; ``None`` means the track is unknown.

    The first running canary whose segment matches decides the segment; the
    student goes to the canary iff their sticky bucket is under its weight.
    Everyone else gets the stable model: that of the first matching pin
    (a segment whose own rollout succeeded), else the track's. Requests
    without a student id always go to stable (but keep the segment, so
    stable stats for the segment stay comparable).
    """
    tr = table.tracks.get(track)
    if tr is None:
        return None
    canary: CanaryRoute | None = None
    pin: CanaryRoute | None = None
    for c in tr.canaries:
        if not c.segment.matches(subject, language):
            continue
        if c.stable_model is None:
            canary = canary or c
        else:
            pin = pin or c
        if canary is not None and pin is not None:
            break
    stable = tr.stable_model if pin is None or pin.stable_model is None else pin.stable_model
    if canary is not None:
        if student_id and in_canary(canary.salt, student_id, canary.weight_bp):
            return Route("canary", canary.model, canary.segment.label, canary.rollout_id)
        return Route("stable", stable, canary.segment.label, canary.rollout_id)
    if pin is not None:
        return Route("stable", stable, pin.segment.label, None)
    return Route("stable", stable, ALL, None)
