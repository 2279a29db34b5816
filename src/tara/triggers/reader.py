"""The thin reader that turns telemetry into :class:`~tara.triggers.model.Observations`.

Two streaming passes over the interaction log, each a bounded range query:

- the current and previous period (``[now - 2·period, now)``), summed per
  language×subject into the same additive :class:`WindowStats` the gateway
  keeps (feedback counts for the period of the request it rates, as in the
  window store), plus the subjects, languages and grades seen, and for the
  current period per grade and per topic of each language×subject
  (:class:`~tara.triggers.model.CellStats`, at most
  ``max_grades_per_segment`` / ``max_topics_per_segment`` each plus
  ``other``: :mod:`tara.triggers.cells`);
- high-quality interactions (rating ≥ ``finetune.min_rating``) over
  ``volume_lookback``, each counted for its language×subject only if it is
  newer than that scope's last run.

Per-track latency comes from the shared window store when there is one
(every series the log saw, plus each configured track's ``all`` series);
without one (a lone CLI process with in-memory state) it comes from the
same log pass. Memory holds a few counters per scope, whatever the log size.

Topics are counted here rather than on the request path: the gateway only
stores the topic the app named (``X-Tara-Topic`` / ``metadata.topic``); a
request without one gets its topic from the question text by the lexicon
(:mod:`tara.triggers.topics`) as the log is read. The hot path pays nothing
for derivation, a lexicon change applies to the past periods at the next
check, and no per-topic counter exists anywhere but in this pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from tara.telemetry.interactions import Interaction
from tara.telemetry.log import InteractionFilter, InteractionLog
from tara.telemetry.window_fields import add_feedback
from tara.telemetry.window_recorder import add_interaction
from tara.telemetry.window_store import Series, WindowStore
from tara.telemetry.windows import WindowStats
from tara.triggers.cells import CellTable
from tara.triggers.config import TriggerSettings
from tara.triggers.model import CellStats, Dimension, Observations, Scope
from tara.triggers.state import TriggerState
from tara.triggers.topics import OTHER, TopicLexicon, load_lexicon, question_text

Fields = dict[str, float]


def segment_of(ix: Interaction) -> Scope:
    """The language×subject scope of an interaction."""
    return Scope(language=ix.language, subject=ix.subject)


@dataclass(slots=True)
class _Period:
    segments: dict[Scope, Fields] = field(default_factory=dict)
    tracks: dict[str, Fields] = field(default_factory=dict)
    seen: dict[Dimension, Counter[str]] = field(
        default_factory=lambda: {"subject": Counter(), "language": Counter(), "grade": Counter()}
    )

    def add(self, ix: Interaction) -> None:
        fields = self.segments.setdefault(segment_of(ix), {})
        add_interaction(fields, ix)
        add_feedback(fields, ix.rating, ix.tags, ix.relevance)
        add_interaction(self.tracks.setdefault(ix.track, {}), ix)
        seen = self.seen
        if ix.subject is not None:
            seen["subject"][ix.subject] += 1
        if ix.language is not None:
            seen["language"][ix.language] += 1
        if ix.grade is not None:
            seen["grade"][ix.grade] += 1

    def segment_stats(self) -> dict[Scope, WindowStats]:
        return {scope: WindowStats.from_fields(f) for scope, f in self.segments.items()}


class _Cells:
    """Grade and topic cells of each language×subject, bounded per segment."""

    def __init__(self, cfg: TriggerSettings, lexicon: TopicLexicon) -> None:
        self._cfg = cfg
        self._lexicon = lexicon
        self._gap_tags = frozenset(cfg.gap_tags)
        self.topics: dict[Scope, CellTable] = {}
        self.grades: dict[Scope, CellTable] = {}

    def add(self, ix: Interaction) -> None:
        segment = segment_of(ix)
        topic, derived = ix.topic, False
        if topic is None:
            topic = self._lexicon.derive(ix.subject, question_text(ix.messages)) or OTHER
            derived = True
        flagged = not self._gap_tags.isdisjoint(ix.tags)
        tables = (
            (self.topics, self._cfg.max_topics_per_segment, topic, derived),
            (self.grades, self._cfg.max_grades_per_segment, ix.grade or OTHER, False),
        )
        for table, capacity, name, named_by_lexicon in tables:
            found = table.get(segment)
            if found is None:
                found = table[segment] = CellTable(capacity)
            cell = found.cell(name)
            cell.requests += 1
            cell.user_retries += ix.user_retry
            cell.derived += named_by_lexicon
            if ix.rating is not None:
                cell.ratings += 1
                cell.rating_sum += ix.rating
                cell.flagged += flagged

    def stats(self, kind: Literal["topic", "grade"]) -> dict[Scope, CellStats]:
        tables = self.topics if kind == "topic" else self.grades
        return {
            Scope(language=segment.language, subject=segment.subject, **{kind: name}): stats
            for segment, table in tables.items()
            for name, stats in table.cells().items()
        }


class TelemetryReader:
    """Reads what the rules need from the interaction log and (optionally) the window store."""

    def __init__(
        self,
        log: InteractionLog,
        cfg: TriggerSettings,
        *,
        min_rating: int,
        windows: WindowStore | None = None,
        tracks: Iterable[str] = (),
    ) -> None:
        self._log = log
        self._cfg = cfg
        self._lexicon = load_lexicon(cfg.topic_lexicon)
        self._min_rating = min_rating
        self._windows = windows
        self._tracks = tuple(tracks)

    async def read(
        self, now: float, state: TriggerState, *, volume_since: float | None = None
    ) -> Observations:
        """Observations as of ``now``; ``volume_since`` overrides every scope's last run."""
        period = self._cfg.period.total_seconds()
        obs = Observations(now=now, period=period)
        current, previous = _Period(), _Period()
        cells = _Cells(self._cfg, self._lexicon)
        series: set[Series] = {
            Series(t, "all", v) for t in self._tracks for v in ("stable", "canary")
        }
        where = InteractionFilter(since=now - 2 * period, until=now)
        async for ix in self._log.iter_interactions(where):
            if ix.created_at >= now - period:
                current.add(ix)
                cells.add(ix)
            else:
                previous.add(ix)
            series.add(Series(ix.track, ix.segment, ix.variant))
        obs.current, obs.previous = current.segment_stats(), previous.segment_stats()
        obs.topics, obs.grades = cells.stats("topic"), cells.stats("grade")
        obs.seen_current, obs.seen_previous = current.seen, previous.seen
        await self._read_volume(obs, state, volume_since)
        for scope in obs.current:
            obs.high_quality.setdefault(scope, 0)
            obs.volume_since.setdefault(scope, self._since(scope, state, volume_since, now))
        if self._windows is None:
            obs.tracks_current = {t: WindowStats.from_fields(f) for t, f in current.tracks.items()}
            obs.tracks_previous = {
                t: WindowStats.from_fields(f) for t, f in previous.tracks.items()
            }
        else:
            obs.tracks_current = await self._read_tracks(series, now - period, now)
            obs.tracks_previous = await self._read_tracks(series, now - 2 * period, now - period)
        return obs

    def _since(
        self, scope: Scope, state: TriggerState, override: float | None, now: float
    ) -> float:
        if override is not None:
            return override
        start = now - self._cfg.volume_lookback.total_seconds()
        last = state.last_run(scope)
        return start if last is None else max(start, last)

    async def _read_volume(
        self, obs: Observations, state: TriggerState, override: float | None
    ) -> None:
        start = (
            override
            if override is not None
            else obs.now - self._cfg.volume_lookback.total_seconds()
        )
        where = InteractionFilter(
            since=start, until=obs.now, min_rating=self._min_rating, rated_only=True
        )
        counts: Counter[Scope] = Counter()
        async for ix in self._log.iter_interactions(where):
            scope = segment_of(ix)
            since = obs.volume_since.get(scope)
            if since is None:
                since = obs.volume_since[scope] = self._since(scope, state, override, obs.now)
            if ix.created_at >= since:
                counts[scope] += 1
        for scope in obs.volume_since:
            obs.high_quality[scope] = counts[scope]

    async def _read_tracks(
        self, series: set[Series], t0: float, t1: float
    ) -> dict[str, WindowStats]:
        assert self._windows is not None
        got = await self._windows.read_many(sorted(series), t0, t1)
        out: dict[str, WindowStats] = {}
        for s, stats in got.items():
            if stats.requests:
                out.setdefault(s.track, WindowStats()).merge(stats)
        return out
