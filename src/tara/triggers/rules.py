"""The fine-tuning triggers, one pure function each, and :func:`evaluate` over them all.

Every rule takes already-summed numbers (``WindowStats`` of a scope in the
current and previous period, counts, the time) and the settings, and returns
a :class:`~tara.triggers.model.TriggerResult`. A rule whose minimum sample
size is not met says so (``enough_data=False``) rather than firing on a
handful of ratings. Week-over-week rules compare *shares* (negative ratings
per rating, complaints per rating), so traffic growing or shrinking does not
fire them by itself.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Collection, Mapping

from tara.telemetry.windows import WindowStats
from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, Dimension, Observations, Scope, TriggerResult
from tara.triggers.retirement import BASE_RETIREMENT, base_model_retirement

DATA_VOLUME = "data_volume"
LOW_RATING = "low_rating"
NEGATIVE_FEEDBACK = "negative_feedback"
LOW_RELEVANCE = "low_relevance"
CULTURAL_COMPLAINTS = "cultural_complaints"
LATENCY = "latency_p95"
RETRY_RATE = "retry_rate"
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
    )


def _mean_below(
    name: str, scope: Scope, mean: float | None, limit: float, what: str, n: int, min_n: int
) -> TriggerResult:
    """Fires when ``mean`` is under ``limit``, once ``n`` of ``what`` reach ``min_n``."""
    enough = n >= min_n
    fired = enough and mean is not None and mean < limit
    return TriggerResult(name, fired, scope, mean, limit, "<", {what: n}, enough)


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
    return TriggerResult(name, fired, scope, value, increase, ">", evidence, enough)


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
    return TriggerResult(LATENCY, fired, scope, rise, cfg.latency_increase, ">", evidence, enough)


def retry_rate(scope: Scope, stats: WindowStats, cfg: TriggerSettings) -> TriggerResult:
    """User retries per request on a topic above ``max_retry_rate``."""
    enough = stats.requests >= cfg.min_requests
    rate = stats.user_retries / stats.requests if stats.requests else None
    fired = enough and rate is not None and rate > cfg.max_retry_rate
    evidence = {"retries": stats.user_retries, "requests": stats.requests}
    return TriggerResult(RETRY_RATE, fired, scope, rate, cfg.max_retry_rate, ">", evidence, enough)


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

    ``retirement_runs`` holds, per track, when the retirement trigger last started a run.
    """
    out: list[TriggerResult] = []
    for scope in sorted(obs.high_quality):
        since = obs.volume_since.get(scope, obs.now)
        out.append(data_volume(scope, obs.high_quality[scope], since, cfg))
    topics = sorted(set(obs.current) | set(obs.previous))
    for scope in topics:
        out.append(low_rating(scope, obs.stats(scope), cfg))
    for scope in topics:
        out.append(negative_feedback(scope, obs.stats(scope), obs.stats(scope, previous=True), cfg))
    for scope in topics:
        out.append(low_relevance(scope, obs.stats(scope), cfg))
    for scope in topics:
        out.append(
            cultural_complaints(scope, obs.stats(scope), obs.stats(scope, previous=True), cfg)
        )
    for track in sorted(set(obs.tracks_current) | set(obs.tracks_previous)):
        now = obs.tracks_current.get(track) or WindowStats()
        before = obs.tracks_previous.get(track) or WindowStats()
        out.append(latency_degraded(Scope(track=track), now, before, cfg))
    for scope in topics:
        out.append(retry_rate(scope, obs.stats(scope), cfg))
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
    return out


def _no_traffic(name: str, cfg: TriggerSettings) -> TriggerResult:
    """A row for a trigger that had no scope to look at, so every trigger is reported."""
    thresholds: dict[str, tuple[float, str]] = {
        DATA_VOLUME: (cfg.min_high_quality, ">="),
        LOW_RATING: (cfg.max_rating_mean, "<"),
        NEGATIVE_FEEDBACK: (cfg.negative_increase, ">"),
        LOW_RELEVANCE: (cfg.min_relevance, "<"),
        CULTURAL_COMPLAINTS: (cfg.cultural_increase, ">"),
        LATENCY: (cfg.latency_increase, ">"),
        RETRY_RATE: (cfg.max_retry_rate, ">"),
        NEW_SUBJECT: (cfg.min_new_requests, ">="),
        NEW_LANGUAGE: (cfg.min_new_requests, ">="),
        NEW_GRADE: (cfg.min_new_requests, ">="),
        BASE_RETIREMENT: (cfg.retirement_lead.total_seconds() / DAY, "<="),
    }
    threshold, op = thresholds[name]
    note = "no track to look at" if name == BASE_RETIREMENT else "no traffic in the period"
    evidence = {"note": note}
    return TriggerResult(name, False, EVERYTHING, None, float(threshold), op, evidence, False)
