"""Which firing triggers start a fine-tuning run: one pure function, :func:`admit`.

A firing rule whose action is ``start_run`` (``retrain.rule_actions``)
proposes a run for its segment: the language×subject (or language, or
subject) of its scope. Several rules firing for one segment make one run
that keeps the evidence of each. A segment then gets its run unless

- a run is already open on it (or on a segment overlapping it),
- it is cooling down: a run of it started or ended less than
  ``triggers.cooldown`` ago (so a rolled-back run blocks the next one too),
- it lacks data: fewer than ``retrain.min_training_examples`` interactions
  rated ≥ ``finetune.min_rating`` since its last run (the ``data_volume``
  rule's count),
- ``retrain.max_open_runs`` runs are open already.

Each refusal is kept with its reason (shown by ``tara triggers check`` and
sent in the firing's webhook), never silently dropped. Rules whose action is
``alert``, and rules whose scope is no segment (a whole track, everything),
only alert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tara.retrain.config import RetrainSettings, RuleAction
from tara.retrain.run import Run
from tara.rollout.routing import Segment
from tara.settings import Settings
from tara.triggers.model import Scope, TriggerResult

DATA_VOLUME = "data_volume"
"""The rule whose value is a segment's count of high-quality interactions since its last run."""


class RunTimes(Protocol):
    """When each scope last started a run (the triggers' state)."""

    def last_run(self, scope: Scope, trigger: str | None = None) -> float | None:
        """When ``trigger`` (any when ``None``) last started a run for ``scope``."""
        ...


def segment_of(scope: Scope) -> Segment | None:
    """The traffic segment a rule's scope is about, or ``None`` (a track, a grade, everything)."""
    language = getattr(scope, "language", None)
    subject = getattr(scope, "subject", None)
    if language is None and subject is None:
        return None
    try:
        return Segment(subject=subject, language=language)
    except ValueError:  # a value no segment can hold (":" or "*"): nothing to train
        return None


def scope_of(segment: Segment) -> Scope:
    """The triggers' scope of a segment (where its runs are remembered)."""
    return Scope(language=segment.language, subject=segment.subject)


@dataclass(frozen=True, slots=True)
class SegmentDecision:
    """What the firings of one segment led to: a run, or the reason there is none."""

    segment: Segment
    track: str
    firings: tuple[TriggerResult, ...]
    start: bool
    reason: str
    high_quality: int
    """Interactions rated ≥ ``finetune.min_rating`` since the segment's last run."""
    data_since: float
    """Where the new run's data would start (its last run, or ``volume_lookback`` ago)."""
    cooldown_until: float | None = None
    open_run: str | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "segment": self.segment.label,
            "track": self.track,
            "triggers": [f.name for f in self.firings],
            "start": self.start,
            "reason": self.reason,
            "high_quality": self.high_quality,
            "data_since": self.data_since,
            "cooldown_until": self.cooldown_until,
            "open_run": self.open_run,
        }


@dataclass(slots=True)
class Admission:
    """The decisions of one look: per segment with a proposing rule, and the alert-only firings."""

    decisions: list[SegmentDecision] = field(default_factory=list)
    alerts: list[TriggerResult] = field(default_factory=list)

    @property
    def started(self) -> list[SegmentDecision]:
        """The segments that get a run now."""
        return [d for d in self.decisions if d.start]

    def decision_for(self, result: TriggerResult) -> SegmentDecision | None:
        """The segment decision a firing took part in (``None``: it only alerts)."""
        for decision in self.decisions:
            if result in decision.firings:
                return decision
        return None


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers admission applies besides ``retrain``'s (from ``triggers`` and ``finetune``)."""

    cooldown: float
    """Seconds a segment waits after its last run started or ended."""
    volume_lookback: float
    """Seconds back the data of a segment that never ran starts."""
    track: str
    """The track a run belongs to when its rule's scope names none."""
    min_rating: int
    """What "high quality" means: rated at least this."""

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings give; the track is ``retrain.track``, else the first one."""
        return cls(
            settings.triggers.cooldown.total_seconds(),
            settings.triggers.volume_lookback.total_seconds(),
            settings.retrain.track or next(iter(settings.tracks), ""),
            settings.finetune.min_rating,
        )


def high_quality(results: Iterable[TriggerResult]) -> dict[Segment, int]:
    """Each language×subject's high-quality count, from the ``data_volume`` rule's results."""
    counts: dict[Segment, int] = {}
    for r in results:
        segment = segment_of(r.scope)
        if r.name == DATA_VOLUME and segment is not None and r.value is not None:
            counts[segment] = counts.get(segment, 0) + int(r.value)
    return counts


def last_activity(segment: Segment, runs: Sequence[Run], times: RunTimes) -> float | None:
    """When the segment (or one overlapping it) last started or finished a run."""
    moments = [t for r in runs if r.segment.overlaps(segment) for t in (r.created_at, r.ended_at)]
    moments.append(times.last_run(scope_of(segment)))
    return max((t for t in moments if t is not None), default=None)


def _data_since(segment: Segment, runs: Sequence[Run], times: RunTimes, earliest: float) -> float:
    last = times.last_run(scope_of(segment))
    ends = [r.data_until for r in runs if r.segment == segment]
    return max([earliest, *ends, *([last] if last is not None else [])])


@dataclass(frozen=True, slots=True)
class _Verdict:
    reason: str
    cooldown_until: float | None = None
    open_run: str | None = None


def _refusal(
    segment: Segment,
    have: int,
    opened: list[Run],
    last: float | None,
    settings: RetrainSettings,
    limits: Limits,
    now: float,
) -> _Verdict | None:
    """Why the segment gets no run now, or ``None`` when it gets one."""
    blocking = next((r for r in opened if r.segment.overlaps(segment)), None)
    if blocking is not None:
        why = f"run {blocking.id} is open on {blocking.segment.label} ({blocking.state.value})"
        return _Verdict(why, open_run=blocking.id)
    until = None if last is None else last + limits.cooldown
    if until is not None and now < until:
        return _Verdict(f"cooling down for {_duration(until - now)} after its last run", until)
    if have < settings.min_training_examples:
        return _Verdict(
            f"too little data: {have:,} of {settings.min_training_examples:,} interactions "
            f"rated ≥ {limits.min_rating} since its last run"
        )
    if len(opened) >= settings.max_open_runs:
        return _Verdict(
            f"{len(opened)} runs are open (retrain.max_open_runs is {settings.max_open_runs})"
        )
    return None


def admit(
    results: Sequence[TriggerResult],
    runs: Sequence[Run],
    times: RunTimes,
    settings: RetrainSettings,
    limits: Limits,
    now: float,
) -> Admission:
    """Decide which firings start a run (module docstring); ``runs`` is every stored run."""
    out = Admission()
    proposed: dict[Segment, list[TriggerResult]] = defaultdict(list)
    for r in results:
        if not r.fired:
            continue
        segment = segment_of(r.scope)
        if settings.action(r.name) is RuleAction.ALERT or segment is None:
            out.alerts.append(r)
        else:
            proposed[segment].append(r)
    counts = high_quality(results)
    opened = [r for r in runs if r.open]
    for segment in sorted(proposed, key=lambda s: s.label):
        firings = tuple(proposed[segment])
        track = next((f.scope.track for f in firings if f.scope.track), limits.track)
        have = sum(n for s, n in counts.items() if segment.contains(s))
        since = _data_since(segment, runs, times, now - limits.volume_lookback)
        last = last_activity(segment, runs, times)
        verdict = _refusal(segment, have, opened, last, settings, limits, now)
        start = verdict is None
        if verdict is None:
            names = ", ".join(f.name for f in firings)
            verdict = _Verdict(
                f"{names} fired; {have:,} interactions rated ≥ {limits.min_rating} to train on"
            )
            # Counts against max_open_runs (and blocks overlapping segments) from now on.
            opened.append(Run("(new)", track, segment, now, since, now))
        out.decisions.append(
            SegmentDecision(
                segment,
                track,
                firings,
                start,
                verdict.reason,
                have,
                since,
                verdict.cooldown_until,
                verdict.open_run,
            )
        )
    return out


def _duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``40s``: how long a wait is, to the two largest units."""
    units = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))
    parts: list[str] = []
    left = max(0, round(seconds))
    for name, size in units:
        if left >= size or (name == "s" and not parts):
            parts.append(f"{left // size}{name}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def run_evidence(result: TriggerResult, period: float) -> Mapping[str, Any]:
    """What a run keeps of a rule that started it: the result plus its window."""
    return {**result.as_json(), "window_seconds": period}
