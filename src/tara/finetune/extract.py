"""Extraction: which logged interactions are candidates for training, as plain records.

A candidate is a successful, well-rated interaction inside the requested time
range, track and segment, with its text captured. The interaction log can
apply the same filter in its query; applying it here again keeps the
pipeline correct over any source (a JSONL export, a test generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tara.telemetry.interactions import Interaction

UNKNOWN = "unknown"
"""Language or subject label of interactions that did not say."""

# Extraction outcomes, counted in the report next to the validation rules.
OUTSIDE_FILTER = "outside_filter"
NOT_OK = "not_ok_status"
BELOW_MIN_RATING = "below_min_rating"
NO_TEXT = "no_text"
EXTRACT_REASONS = (OUTSIDE_FILTER, NOT_OK, BELOW_MIN_RATING, NO_TEXT)


@dataclass(frozen=True, slots=True)
class ExtractFilter:
    """Which interactions to take: ``since`` inclusive, ``until`` exclusive (unix seconds)."""

    min_rating: int = 4
    since: float | None = None
    until: float | None = None
    track: str | None = None
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """One question/answer pair that passed extraction."""

    request_id: str
    language: str
    subject: str
    question: str
    answer: str
    answer_tokens: int | None
    tags: tuple[str, ...]
    rating: int = 5
    """The student's rating (duplicates keep the best-rated example)."""
    student: str | None = None
    """The student's hash (a student's repeated question stays in one split)."""

    @property
    def combination(self) -> tuple[str, str]:
        """The ``(language, subject)`` stratum."""
        return (self.language, self.subject)


def _text(content: Any) -> str | None:
    """Text of a message's content: a string, or the text parts of a parts list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        ]
        return "\n".join(parts) if parts else None
    return None


def last_user_text(messages: list[dict[str, Any]] | None) -> str | None:
    """The last user message's text, the question the answer replies to."""
    if not messages:
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return None


def extract(ix: Interaction, where: ExtractFilter) -> Candidate | str:
    """The interaction as a candidate, or the name of the extraction step that left it out."""
    if (
        (where.since is not None and ix.created_at < where.since)
        or (where.until is not None and ix.created_at >= where.until)
        or (where.track is not None and ix.track != where.track)
        or (where.segment is not None and ix.segment != where.segment)
    ):
        return OUTSIDE_FILTER
    if ix.status != 200:
        return NOT_OK
    if ix.rating is None or ix.rating < where.min_rating:
        return BELOW_MIN_RATING
    question = last_user_text(ix.messages)
    if question is None or ix.answer is None:
        return NO_TEXT
    return Candidate(
        request_id=ix.request_id,
        language=ix.language or UNKNOWN,
        subject=ix.subject or UNKNOWN,
        question=question,
        answer=ix.answer,
        answer_tokens=ix.completion_tokens,
        tags=tuple(ix.tags),
        rating=ix.rating,
        student=ix.student_hash,
    )
