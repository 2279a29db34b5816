"""Settings of the fine-tuning triggers (``Settings.triggers``).

Defaults follow the fine-tuning strategy: 1,000 high-quality interactions per
language×subject (5,000–10,000 optimal), at most one run per scope every two
weeks, average rating below 3.5, negative feedback up more than 20% week over
week, relevance below 0.7, cultural complaints rising, p95 latency up more
than 15% (per track and per language×subject), retry rate above 30% (per
language×subject and per topic), knowledge gaps (grades or topics rated low or
tagged wrong/irrelevant), a language behind the others in a subject (ratings
or ``language`` complaints, on a confidence bound), anything new in traffic,
the start of the academic year (June 1 in India), and the retirement of the
stable model's base model (60 days ahead). Minimum sample sizes keep a
handful of ratings from firing anything. Durations accept seconds or ISO 8601
(``"P7D"``), so tests and the demo run them in seconds.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def _known_retirements() -> dict[str, dt.date]:
    # OpenAI's deprecations page, "2026-04-22: Legacy GPT model snapshots" (docs/fine-tuning.md).
    shutdown = dt.date(2026, 10, 23)
    return dict.fromkeys(("gpt-4-0613", "gpt-4", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"), shutdown)


class TriggerSettings(BaseModel):
    """When the triggers say a fine-tuning run is due."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    period: timedelta = timedelta(days=7)
    """Length of "this week": week-over-week rules compare it with the period before it."""
    cooldown: timedelta = timedelta(days=14)
    """A scope that started a run this recently starts no other (strategy: 2–4 weeks)."""
    state_dir: Path = Path("tara-data")
    """Directory of ``triggers.json``, which remembers when each scope last started a run."""

    min_high_quality: int = Field(1000, ge=1)
    """High-quality interactions (rating ≥ ``finetune.min_rating``) per language×subject
    since the scope's last run that fire the data-volume trigger."""
    optimal_high_quality: tuple[int, int] = (5000, 10000)
    """Range reported as the optimal dataset size per language×subject (not a threshold)."""
    volume_lookback: timedelta = timedelta(days=90)
    """How far back high-quality interactions count for a scope that never started a run."""

    max_rating_mean: float = Field(3.5, ge=1, le=5)
    """Average rating in the period below this fires the quality trigger."""
    negative_increase: float = Field(0.2, ge=0)
    """Relative rise of the share of negative ratings (≤ 2) over the previous period
    above this fires (0.2: up more than 20%)."""
    min_relevance: float = Field(0.7, ge=0, le=1)
    """Mean reported relevance in the period below this fires."""
    cultural_increase: float = Field(0.0, ge=0)
    """Relative rise of the share of ``cultural``-tagged ratings above this fires
    (0: any rise, once ``min_rising_events`` is reached)."""
    cultural_tag: str = "cultural"
    """Feedback tag of a cultural-appropriateness complaint."""
    latency_increase: float = Field(0.15, ge=0)
    """Relative rise of a track's p95 latency over the previous period above this fires."""
    latency_quantile: float = Field(0.95, gt=0, lt=1)
    """The latency quantile compared week over week."""
    max_retry_rate: float = Field(0.3, gt=0, le=1)
    """Share of a language×subject's (or one topic's) requests that are user retries above
    this fires."""

    min_ratings: int = Field(30, ge=1)
    """Ratings a scope needs in each compared period before a rating rule may fire."""
    min_rising_events: int = Field(5, ge=1)
    """Negative ratings or cultural complaints needed in the period before a week-over-week
    rise of their share may fire (a rise from zero counts only past this)."""
    min_relevance_reports: int = Field(30, ge=1)
    """Relevance reports a scope needs in the period before the relevance rule may fire."""
    min_requests: int = Field(100, ge=1)
    """Requests a scope needs in each compared period before a latency or retry rule may fire."""
    min_new_requests: int = Field(20, ge=1)
    """Requests with a new subject, grade or language in the period before it counts as seen."""
    known_grades: list[str] = Field(default_factory=list)
    """Grades served; empty: a grade is new only if the previous period did not see it."""

    min_topic_requests: int = Field(50, ge=1)
    """Requests a topic needs in the period before its retry rate may fire."""
    max_topics_per_segment: int = Field(20, ge=1, le=1000)
    """Topics tracked per language×subject in one check; the rest (and questions with no
    topic) count under ``other``. A topic with more than 1/N of the requests is always kept."""
    max_grades_per_segment: int = Field(20, ge=1, le=1000)
    """Grades tracked per language×subject in one check; the rest count under ``other``."""
    topic_lexicon: Path | None = None
    """Topic lexicon replacing the shipped one (``triggers/data/topics.txt``, same syntax):
    how a question without ``X-Tara-Topic`` gets its topic."""
    gap_max_rating_mean: float = Field(3.5, ge=1, le=5)
    """A grade or topic whose mean rating is below this is a knowledge gap."""
    gap_max_flagged_share: float = Field(0.2, ge=0, le=1)
    """A grade or topic with more than this share of its ratings tagged ``gap_tags`` is a
    knowledge gap."""
    gap_tags: list[str] = Field(default_factory=lambda: ["wrong", "irrelevant"])
    """Feedback tags that say an answer missed the content."""
    min_cell_ratings: int = Field(30, ge=1)
    """Ratings a grade or topic needs in the period before it can be called a knowledge gap."""
    language_min_rating_gap: float = Field(0.2, ge=0)
    """A language's mean rating in a subject fires when, at ``comparison_confidence``, it is
    more than this behind the other languages' in that subject."""
    language_min_complaint_gap: float = Field(0.02, ge=0, le=1)
    """A language's share of ``language``-tagged ratings in a subject fires when, at
    ``comparison_confidence``, it exceeds the other languages' by more than this."""
    language_tag: str = "language"
    """Feedback tag of an answer in the wrong language or register."""
    comparison_confidence: float = Field(0.99, gt=0.5, lt=1)
    """One-sided confidence of the language comparisons, for all language×subjects of one
    check together (split among them, Bonferroni)."""

    academic_year_starts: list[str] = Field(default_factory=lambda: ["06-01"])
    """Start dates of academic years as ``MM-DD`` (June 1 in India; add one per board)."""
    academic_year_lead: timedelta = timedelta(days=30)
    """The academic-year trigger fires this long before a start date, up to the date."""
    utc_offset_hours: float = Field(5.5, ge=-12, le=14)
    """Offset of the calendar the start dates are in (India: +5:30, no daylight saving)."""

    base_model_retirements: dict[str, dt.date] = Field(default_factory=_known_retirements)
    """Known shutdown dates of base models (``YYYY-MM-DD``, UTC), as their provider published
    them; a fine-tuned model stops answering with its base. Replaces the built-in table."""
    retirement_lead: timedelta = timedelta(days=60)
    """The retirement trigger fires this long before the stable model's base shuts down."""
    successor_base_model: str | None = None
    """Base model of the run proposed when the stable model's base retires;
    None: ``finetune.base_model``."""

    @field_validator("academic_year_starts")
    @classmethod
    def _month_days(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                # 2024 is a leap year, so 02-29 is accepted.
                dt.date.fromisoformat(f"2024-{text}")
            except ValueError:
                msg = f"academic year start {text!r} must be MM-DD, such as 06-01"
                raise ValueError(msg) from None
        return value

    @model_validator(mode="after")
    def _positive_durations(self) -> TriggerSettings:
        if self.period <= timedelta(0):
            msg = "period must be positive"
            raise ValueError(msg)
        if min(self.cooldown, self.academic_year_lead, self.retirement_lead) < timedelta(0):
            msg = "cooldown, academic_year_lead and retirement_lead must not be negative"
            raise ValueError(msg)
        low, high = self.optimal_high_quality
        if not 0 < low <= high:
            msg = "optimal_high_quality must be (low, high) with 0 < low <= high"
            raise ValueError(msg)
        return self
