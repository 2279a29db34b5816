"""The fine-tuning triggers, one pure function each, and :func:`evaluate` over them all.

Every rule takes already-summed numbers (``WindowStats`` of a scope in the
current and previous period, grade and topic cells, counts, the time) and the
settings, and returns a :class:`~tara.triggers.model.TriggerResult` with its
sample size and minimum; :func:`evaluate` adds the time window. A rule whose
minimum sample size is not met says so (``enough_data=False``) rather than
firing on a handful of ratings; a rule comparing two periods needs the
minimum in both. Week-over-week rules compare *shares* (negative ratings per
rating, complaints per rating), so traffic growing or shrinking does not fire
them by itself. The language rules compare one language with the others on
a lower confidence bound (:mod:`tara.triggers.comparisons`), never on a raw
difference.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import Counter
from collections.abc import Collection, Mapping

from tara.telemetry.windows import WindowStats
from tara.triggers.comparisons import critical_z, mean_gap_lower, share_gap_lower
from tara.triggers.config import TriggerSettings
from tara.triggers.model import (
    EVERYTHING,
    CellStats,
    Dimension,
    Observations,
    Scope,
    TriggerResult,
    Window,
)
from tara.triggers.retirement import BASE_RETIREMENT, base_model_retirement

DATA_VOLUME = "data_volume"
LOW_RATING = "low_rating"
NEGATIVE_FEEDBACK = "negative_feedback"
LOW_RELEVANCE = "low_relevance"
CULTURAL_COMPLAINTS = "cultural_complaints"
LATENCY = "latency_p95"
RETRY_RATE = "retry_rate"
TOPIC_RETRY_RATE = "topic_retry_rate"
KNOWLEDGE_GAP = "knowledge_gap"
LANGUAGE_RATING = "language_rating"
LANGUAGE_COMPLAINTS = "language_complaints"
NEW_SUBJECT = "new_subject"
NEW_LANGUAGE = "new_language"
NEW_GRADE = "new_grade"
ACADEMIC_YEAR = "academic_year"

TRIGGERS: tuple[str, ...] = (
    DATA_VOLUME,
    LOW_RATING,
    NEGATIVE_FEEDBACK,
    LOW_RELEVANCE,
    CULTURAL_COMPLAINTS,
    LATENCY,
    RETRY_RATE,
    TOPIC_RETRY_RATE,
    KNOWLEDGE_GAP,
    LANGUAGE_RATING,
    LANGUAGE_COMPLAINTS,
    NEW_SUBJECT,
    NEW_LANGUAGE,
    NEW_GRADE,
    ACADEMIC_YEAR,
    BASE_RETIREMENT,
)
"""Every trigger name: the values of the ``trigger`` label of ``tara_trigger_fired_total``."""

NEW_VALUE_TRIGGER: dict[Dimension, str] = {
    "subject": NEW_SUBJECT,
    "language": NEW_LANGUAGE,
    "grade": NEW_GRADE,
}
DAY = 86_400.0


def relative_rise(now: float, before: float) -> float:
    """``now / before - 1``; infinite for a rise from zero, 0 for zero to zero."""
    if before == 0:
        return math.inf if now > 0 else 0.0
    return now / before - 1.0


def data_volume(
    scope: Scope, high_quality: int, since: float, cfg: TriggerSettings
) -> TriggerResult:
    """Enough high-quality interactions since the scope's last run to train on."""
    low, high = cfg.optimal_high_quality
    evidence = {
        "since": since,
        "optimal_range": [low, high],
        "optimal": low <= high_quality <= high,
        "share_of_optimal": round(high_quality / low, 3),
    }
    return TriggerResult(
        DATA_VOLUME,
        high_quality >= cfg.min_high_quality,
        scope,
        float(high_quality),
        float(cfg.min_high_quality),
        ">=",
        evidence,
        sample=high_quality,
    )


def _mean_below(
    name: str, scope: Scope, mean: float | None, limit: float, what: str, n: int, min_n: int
) -> TriggerResult:
    """Fires when ``mean`` is under ``limit``, once ``n`` of ``what`` reach ``min_n``."""
    enough = n >= min_n
    fired = enough and mean is not None and mean < limit
    return TriggerResult(
        name, fired, scope, mean, limit, "<", {what: n}, enough, sample=n, min_sample=min_n
    )


def low_rating(scope: Scope, stats: WindowStats, cfg: TriggerSettings) -> TriggerResult:
    """Average rating in the period below ``max_rating_mean``."""
    mean, limit = stats.rating_mean, cfg.max_rating_mean
    return _mean_below(
        LOW_RATING, scope, mean, limit, "ratings", stats.rating_count, cfg.min_ratings
    )


def _rising_share(
    name: str,
    scope: Scope,
    events: tuple[int, int],
    ratings: tuple[int, int],
    increase: float,
    cfg: TriggerSettings,
) -> TriggerResult:
    (now_events, before_events), (now_n, before_n) = events, ratings
    enough = now_n >= cfg.min_ratings and before_n >= cfg.min_ratings
    share_now = now_events / now_n if now_n else 0.0
    share_before = before_events / before_n if before_n else 0.0
    rise = relative_rise(share_now, share_before)
    fired = enough and now_events >= cfg.min_rising_events and rise > increase
    evidence = {
        "events": now_events,
        "previous_events": before_events,
        "ratings": now_n,
        "previous_ratings": before_n,
        "share": round(share_now, 4),
        "previous_share": round(share_before, 4),
    }
    value = rise if enough else None
    return TriggerResult(
        name,
        fired,
        scope,
        value,
        increase,
        ">",
        evidence,
        enough,
        sample=min(now_n, before_n),
        min_sample=cfg.min_ratings,
    )


def negative_feedback(
    scope: Scope, current: WindowStats, previous: WindowStats, cfg: TriggerSettings
) -> TriggerResult:
    """The share of ratings ≤ 2 rose by more than ``negative_increase`` over the last period."""
    return _rising_share(
        NEGATIVE_FEEDBACK,
        scope,
        (current.negative_ratings, previous.negative_ratings),
        (current.rating_count, previous.rating_count),
        cfg.negative_increase,
        cfg,
    )


def cultural_complaints(
    scope: Scope, current: WindowStats, previous: WindowStats, cfg: TriggerSettings
) -> TriggerResult:
    """The share of ratings tagged ``cultural`` rose over the last period."""
    tag = cfg.cultural_tag
    return _rising_share(
        CULTURAL_COMPLAINTS,
        scope,
        (current.tags.get(tag, 0), previous.tags.get(tag, 0)),
        (current.rating_count, previous.rating_count),
        cfg.cultural_increase,
        cfg,
    )


def low_relevance(scope: Scope, stats: WindowStats, cfg: TriggerSettings) -> TriggerResult:
    """Mean reported relevance in the period below ``min_relevance``."""
    mean, limit, n = stats.relevance_mean, cfg.min_relevance, stats.relevance_count
    return _mean_below(LOW_RELEVANCE, scope, mean, limit, "reports", n, cfg.min_relevance_reports)


def latency_degraded(
    scope: Scope, current: WindowStats, previous: WindowStats, cfg: TriggerSettings
) -> TriggerResult:
    """The latency quantile (p95) rose by more than ``latency_increase`` over the last period."""
    q = cfg.latency_quantile
    now_n, before_n = sum(current.latency), sum(previous.latency)
    enough = now_n >= cfg.min_requests and before_n >= cfg.min_requests
    now_p = current.latency_quantile(q)
    before_p = previous.latency_quantile(q)
    rise = relative_rise(now_p, before_p) if enough and now_p and before_p else None
    evidence = {
        "quantile": q,
        "seconds": now_p,
        "previous_seconds": before_p,
        "answers": now_n,
        "previous_answers": before_n,
    }
    fired = rise is not None and rise > cfg.latency_increase
    return TriggerResult(
        LATENCY,
        fired,
        scope,
        rise,
        cfg.latency_increase,
        ">",
        evidence,
        enough,
        sample=min(now_n, before_n),
        min_sample=cfg.min_requests,
    )


def _retry_rate(
    name: str,
    scope: Scope,
    retries: int,
    requests: int,
    min_n: int,
    cfg: TriggerSettings,
    **extra: int,
) -> TriggerResult:
    enough = requests >= min_n
    rate = retries / requests if requests else None
    fired = enough and rate is not None and rate > cfg.max_retry_rate
    evidence = {"retries": retries, "requests": requests, **extra}
    return TriggerResult(
        name,
        fired,
        scope,
        rate,
        cfg.max_retry_rate,
        ">",
        evidence,
        enough,
        sample=requests,
        min_sample=min_n,
    )


def retry_rate(scope: Scope, stats: WindowStats, cfg: TriggerSettings) -> TriggerResult:
    """User retries per request in a language×subject above ``max_retry_rate``."""
    return _retry_rate(RETRY_RATE, scope, stats.user_retries, stats.requests, cfg.min_requests, cfg)


def topic_retry_rate(scope: Scope, cell: CellStats, cfg: TriggerSettings) -> TriggerResult:
    """User retries per request on one topic of a language×subject above ``max_retry_rate``.

    Needs ``min_topic_requests`` requests on the topic; the evidence says how
    many had their topic derived from the question rather than named by the app.
    """
    extra = {"derived": cell.derived}
    if cell.evictions:
        extra["evictions"] = cell.evictions
    return _retry_rate(
        TOPIC_RETRY_RATE,
        scope,
        cell.user_retries,
        cell.requests,
        cfg.min_topic_requests,
        cfg,
        **extra,
    )


def _cell_name(cell: Scope) -> dict[str, str]:
    """A cell's own part: ``{"grade": ...}`` or ``{"topic": ...}``."""
    return {k: v for k, v in cell.as_json().items() if k in ("grade", "topic")}


def knowledge_gap(
    scope: Scope, cells: Mapping[Scope, CellStats], cfg: TriggerSettings
) -> TriggerResult:
    """Grades and topics of a language×subject rated low or tagged ``wrong``/``irrelevant`` often.

    A cell with ``min_cell_ratings`` ratings is a gap when its mean rating is
    below ``gap_max_rating_mean`` or the share of its ratings carrying a
    ``gap_tags`` tag is above ``gap_max_flagged_share``. The value is the
    number of gaps; the evidence lists each (rating mean, tagged share,
    ratings), worst first. ``sample`` is the largest cell's ratings.
    """
    judged = {c: s for c, s in cells.items() if s.ratings >= cfg.min_cell_ratings}
    tagged = "tagged " + "/".join(cfg.gap_tags)
    gaps: list[dict[str, object]] = []
    worst_first = sorted(judged, key=lambda c: (judged[c].rating_mean, -judged[c].flagged))
    for cell in worst_first:
        stats = judged[cell]
        mean, share = stats.rating_mean or 0.0, stats.flagged_share or 0.0
        reasons = [
            reason
            for reason, hit in (
                ("low rating", mean < cfg.gap_max_rating_mean),
                (tagged, share > cfg.gap_max_flagged_share),
            )
            if hit
        ]
        if not reasons:
            continue
        gap: dict[str, object] = {
            **_cell_name(cell),
            "rating_mean": round(mean, 3),
            "flagged_share": round(share, 3),
            "ratings": stats.ratings,
            "reasons": reasons,
        }
        if stats.evictions:
            gap["evictions"] = stats.evictions
        gaps.append(gap)
    evidence = {
        "gaps": gaps,
        "cells_judged": len(judged),
        "cells_too_small": len(cells) - len(judged),
        "max_rating_mean": cfg.gap_max_rating_mean,
        "max_flagged_share": cfg.gap_max_flagged_share,
    }
    largest = max((s.ratings for s in cells.values()), default=0)
    return TriggerResult(
        KNOWLEDGE_GAP,
        bool(gaps),
        scope,
        float(len(gaps)),
        1.0,
        ">=",
        evidence,
        bool(judged),
        sample=largest,
        min_sample=cfg.min_cell_ratings,
    )


def language_rating(
    scope: Scope, mine: WindowStats, others: WindowStats, z: float, cfg: TriggerSettings
) -> TriggerResult:
    """A language's mean rating in a subject falls behind the other languages' in that subject.

    The value is the lower confidence bound (one-sided ``z``) of how far
    behind it is; it fires above ``language_min_rating_gap``. Both groups
    need ``min_ratings`` ratings.
    """
    n, others_n = mine.rating_count, others.rating_count
    enough = min(n, others_n) >= cfg.min_ratings
    lower = mean_gap_lower(mine.ratings, others.ratings, z) if enough else None
    evidence = {
        "rating_mean": _round(mine.rating_mean),
        "others_rating_mean": _round(others.rating_mean),
        "ratings": n,
        "others_ratings": others_n,
        "z": round(z, 3),
    }
    fired = lower is not None and lower > cfg.language_min_rating_gap
    return TriggerResult(
        LANGUAGE_RATING,
        fired,
        scope,
        _round(lower),
        cfg.language_min_rating_gap,
        ">",
        evidence,
        enough,
        sample=min(n, others_n),
        min_sample=cfg.min_ratings,
    )


def language_complaints(
    scope: Scope, mine: WindowStats, others: WindowStats, z: float, cfg: TriggerSettings
) -> TriggerResult:
    """A language's share of ``language``-tagged ratings in a subject exceeds the others'.

    The value is the lower confidence bound (Newcombe, one-sided ``z``) of
    how much larger its share is; it fires above ``language_min_complaint_gap``
    once it has ``min_rising_events`` complaints. Both groups need
    ``min_ratings`` ratings.
    """
    tag = cfg.language_tag
    n, others_n = mine.rating_count, others.rating_count
    events, others_events = mine.tags.get(tag, 0), others.tags.get(tag, 0)
    enough = min(n, others_n) >= cfg.min_ratings
    lower = share_gap_lower((events, n), (others_events, others_n), z) if enough else None
    evidence = {
        "complaints": events,
        "others_complaints": others_events,
        "share": round(events / n, 4) if n else None,
        "others_share": round(others_events / others_n, 4) if others_n else None,
        "ratings": n,
        "others_ratings": others_n,
        "z": round(z, 3),
    }
    fired = (
        lower is not None
        and events >= cfg.min_rising_events
        and lower > cfg.language_min_complaint_gap
    )
    return TriggerResult(
        LANGUAGE_COMPLAINTS,
        fired,
        scope,
        _round(lower),
        cfg.language_min_complaint_gap,
        ">",
        evidence,
        enough,
        sample=min(n, others_n),
        min_sample=cfg.min_ratings,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def new_in_traffic(
    dimension: Dimension,
    value: str,
    seen: tuple[int, int],
    known: Collection[str] | None,
    previous_total: int,
    cfg: TriggerSettings,
) -> TriggerResult:
    """A subject, language or grade in traffic that is not configured or was not seen before.

    ``seen`` is its request count in the current and previous period;
    ``known`` the configured values (``None``: judge by the previous period
    only). "Not seen before" needs a previous period with ``min_requests``
    requests, or a fresh deployment would call everything new.
    """
    now_n, before_n = seen
    enough = now_n >= cfg.min_new_requests
    unconfigured = known is not None and value not in known
    unseen = previous_total >= cfg.min_requests and before_n == 0
    reasons = [
        r for r, hit in (("not configured", unconfigured), ("new this period", unseen)) if hit
    ]
    scope = Scope(**{dimension: value})
    evidence = {"previous_requests": before_n, "reasons": reasons}
    return TriggerResult(
        NEW_VALUE_TRIGGER[dimension],
        enough and bool(reasons),
        scope,
        float(now_n),
        float(cfg.min_new_requests),
        ">=",
        evidence,
        enough,
        sample=now_n,
        min_sample=cfg.min_new_requests,
    )


def next_academic_year(now: float, cfg: TriggerSettings) -> dt.datetime | None:
    """Local midnight of the next configured academic-year start (today's counts)."""
    tz = dt.timezone(dt.timedelta(hours=cfg.utc_offset_hours))
    today = dt.datetime.fromtimestamp(now, tz).date()
    starts = [
        dt.date.fromisoformat(f"{year:04d}-{text}")
        for year in (today.year, today.year + 1)
        for text in cfg.academic_year_starts
        if text != "02-29" or year % 4 == 0
    ]
    upcoming = [d for d in starts if d >= today]
    if not upcoming:
        return None
    return dt.datetime.combine(min(upcoming), dt.time(), tz)


def academic_year(now: float, last_run: float | None, cfg: TriggerSettings) -> TriggerResult:
    """The next academic year starts within ``academic_year_lead`` (once per start).

    ``last_run`` is when this trigger last started a run; one inside the
    current window means this start is already served.
    """
    lead_days = cfg.academic_year_lead.total_seconds() / DAY
    start = next_academic_year(now, cfg)
    if start is None:
        return TriggerResult(ACADEMIC_YEAR, False, EVERYTHING, None, lead_days, "<=", {}, False)
    days = (start.timestamp() - now) / DAY
    window_opens = start.timestamp() - cfg.academic_year_lead.total_seconds()
    served = last_run is not None and last_run >= window_opens
    evidence = {"starts": start.date().isoformat(), "already_served": served}
    fired = days <= lead_days and not served
    return TriggerResult(
        ACADEMIC_YEAR, fired, EVERYTHING, round(days, 2), lead_days, "<=", evidence
    )


def _new_values(
    obs: Observations, cfg: TriggerSettings, known: dict[Dimension, Collection[str] | None]
) -> list[TriggerResult]:
    out: list[TriggerResult] = []
    for dimension in ("subject", "language", "grade"):
        now_seen = obs.seen_current.get(dimension, Counter())
        before_seen = obs.seen_previous.get(dimension, Counter())
        before_total = sum(before_seen.values())
        for value in sorted(now_seen):
            seen = (now_seen[value], before_seen.get(value, 0))
            out.append(new_in_traffic(dimension, value, seen, known[dimension], before_total, cfg))
    return out


def _by_segment(cells: Mapping[Scope, CellStats]) -> dict[Scope, dict[Scope, CellStats]]:
    out: dict[Scope, dict[Scope, CellStats]] = {}
    for cell in sorted(cells):
        segment = Scope(language=cell.language, subject=cell.subject)
        out.setdefault(segment, {})[cell] = cells[cell]
    return out


def _language_comparisons(obs: Observations, cfg: TriggerSettings) -> list[TriggerResult]:
    """Each language×subject against the same subject in the other languages, both rules.

    The confidence is split (Bonferroni) over the language×subjects that can
    be compared, so one check as a whole keeps ``comparison_confidence``.
    """
    pairs: list[tuple[Scope, WindowStats, WindowStats]] = []
    for scope in sorted(obs.current):
        if scope.language is None:
            continue
        others = WindowStats.merged(
            stats
            for other, stats in obs.current.items()
            if other.subject == scope.subject and other.language not in (None, scope.language)
        )
        pairs.append((scope, obs.current[scope], others))
    compared = sum(
        1
        for _, mine, others in pairs
        if min(mine.rating_count, others.rating_count) >= cfg.min_ratings
    )
    z = critical_z(cfg.comparison_confidence, compared)
    out = [language_rating(scope, mine, others, z, cfg) for scope, mine, others in pairs]
    out += [language_complaints(scope, mine, others, z, cfg) for scope, mine, others in pairs]
    return out


def evaluate(
    obs: Observations,
    cfg: TriggerSettings,
    *,
    subjects: Collection[str],
    languages: Collection[str],
    academic_last_run: float | None = None,
    successor_base_model: str = "",
    retirement_runs: Mapping[str, float] | None = None,
) -> list[TriggerResult]:
    """Every rule over every scope the observations hold, in :data:`TRIGGERS` order.

    Each result carries the window its data covers. ``retirement_runs`` holds, per
    track, when the retirement trigger last started a run.
    """
    out: list[TriggerResult] = []
    for scope in sorted(obs.high_quality):
        since = obs.volume_since.get(scope, obs.now)
        out.append(data_volume(scope, obs.high_quality[scope], since, cfg))
    segments = sorted(set(obs.current) | set(obs.previous))
    for scope in segments:
        now, before = obs.stats(scope), obs.stats(scope, previous=True)
        out.append(low_rating(scope, now, cfg))
        out.append(negative_feedback(scope, now, before, cfg))
        out.append(low_relevance(scope, now, cfg))
        out.append(cultural_complaints(scope, now, before, cfg))
        out.append(retry_rate(scope, now, cfg))
    for track in sorted(set(obs.tracks_current) | set(obs.tracks_previous)):
        now = obs.tracks_current.get(track) or WindowStats()
        before = obs.tracks_previous.get(track) or WindowStats()
        out.append(latency_degraded(Scope(track=track), now, before, cfg))
    for scope in segments:
        out.append(latency_degraded(scope, obs.stats(scope), obs.stats(scope, previous=True), cfg))
    out.extend(topic_retry_rate(cell, obs.topics[cell], cfg) for cell in sorted(obs.topics))
    cells = _by_segment({**obs.grades, **obs.topics})
    out.extend(knowledge_gap(segment, cells[segment], cfg) for segment in sorted(cells))
    out.extend(_language_comparisons(obs, cfg))
    grades = cfg.known_grades or None
    out.extend(_new_values(obs, cfg, {"subject": subjects, "language": languages, "grade": grades}))
    out.append(academic_year(obs.now, academic_last_run, cfg))
    runs = retirement_runs or {}
    for track, model in sorted(obs.stable_models.items()):
        out.append(
            base_model_retirement(
                track,
                model,
                obs.now,
                retirements=cfg.base_model_retirements,
                lead=cfg.retirement_lead,
                successor=cfg.successor_base_model or successor_base_model,
                last_run=runs.get(track),
                listed=obs.listed_models,
            )
        )
    named = {r.name for r in out}
    out.extend(_no_traffic(name, cfg) for name in TRIGGERS if name not in named)
    out.sort(key=lambda r: TRIGGERS.index(r.name))  # stable: scopes keep their order
    return [_with_window(r, obs) for r in out]


_CURRENT = frozenset(
    {
        LOW_RATING,
        LOW_RELEVANCE,
        RETRY_RATE,
        TOPIC_RETRY_RATE,
        KNOWLEDGE_GAP,
        LANGUAGE_RATING,
        LANGUAGE_COMPLAINTS,
    }
)
"""Rules that read the current period only."""
_BOTH = frozenset(
    (NEGATIVE_FEEDBACK, CULTURAL_COMPLAINTS, LATENCY, NEW_SUBJECT, NEW_LANGUAGE, NEW_GRADE)
)
"""Rules that compare the current period with the previous one."""


def _with_window(result: TriggerResult, obs: Observations) -> TriggerResult:
    """``result`` with the window its rule read (data volume: since the count started)."""
    if result.window is not None:
        return result
    now, period = obs.now, obs.period
    window: Window | None = None
    if result.name in _CURRENT:
        window = Window(now - period, now)
    elif result.name in _BOTH:
        window = Window(now - period, now, now - 2 * period)
    elif result.name == DATA_VOLUME:
        since = result.evidence.get("since")
        window = Window(since if isinstance(since, int | float) else now, now)
    return result if window is None else dataclasses.replace(result, window=window)


def _no_traffic(name: str, cfg: TriggerSettings) -> TriggerResult:
    """A row for a trigger that had no scope to look at, so every trigger is reported."""
    thresholds: dict[str, tuple[float, str, int | None]] = {
        DATA_VOLUME: (cfg.min_high_quality, ">=", None),
        LOW_RATING: (cfg.max_rating_mean, "<", cfg.min_ratings),
        NEGATIVE_FEEDBACK: (cfg.negative_increase, ">", cfg.min_ratings),
        LOW_RELEVANCE: (cfg.min_relevance, "<", cfg.min_relevance_reports),
        CULTURAL_COMPLAINTS: (cfg.cultural_increase, ">", cfg.min_ratings),
        LATENCY: (cfg.latency_increase, ">", cfg.min_requests),
        RETRY_RATE: (cfg.max_retry_rate, ">", cfg.min_requests),
        TOPIC_RETRY_RATE: (cfg.max_retry_rate, ">", cfg.min_topic_requests),
        KNOWLEDGE_GAP: (1, ">=", cfg.min_cell_ratings),
        LANGUAGE_RATING: (cfg.language_min_rating_gap, ">", cfg.min_ratings),
        LANGUAGE_COMPLAINTS: (cfg.language_min_complaint_gap, ">", cfg.min_ratings),
        NEW_SUBJECT: (cfg.min_new_requests, ">=", cfg.min_new_requests),
        NEW_LANGUAGE: (cfg.min_new_requests, ">=", cfg.min_new_requests),
        NEW_GRADE: (cfg.min_new_requests, ">=", cfg.min_new_requests),
        BASE_RETIREMENT: (cfg.retirement_lead.total_seconds() / DAY, "<=", None),
    }
    threshold, op, min_sample = thresholds[name]
    note = "no track to look at" if name == BASE_RETIREMENT else "no traffic in the period"
    evidence = {"note": note}
    return TriggerResult(
        name,
        False,
        EVERYTHING,
        None,
        float(threshold),
        op,
        evidence,
        False,
        sample=0,
        min_sample=min_sample,
    )
