"""The interaction log: where finished interactions and their feedback are stored.

One :class:`InteractionLog` protocol and the SQL both backends share; one
module per backend (:mod:`tara.telemetry.log_sqlite` embedded,
:mod:`tara.telemetry.log_postgres` for production), which import this module
and never the other way round (:mod:`tara.telemetry.log_backends` picks one
from a URL). The same contract suite runs against both.

Feedback may arrive before the interaction it rates is written (the gateway
batches writes in the background, and feedback can land on another replica).
The log keeps such early feedback itself: :meth:`InteractionLog.apply_feedback`
then stores a *placeholder* row holding only the feedback (``recorded`` false),
and the interaction's later write fills in the rest while keeping the feedback.
Placeholders are invisible to :meth:`~InteractionLog.get` and
:meth:`~InteractionLog.iter_interactions`; unclaimed ones age out with
:meth:`~InteractionLog.purge` like any row. Because both writes are upserts on
the primary key, neither order nor concurrency can lose the rating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tara.telemetry.interactions import Interaction

COLUMNS: tuple[str, ...] = (
    "request_id",
    "created_at",
    "track",
    "segment",
    "variant",
    "model",
    "student_hash",
    "subject",
    "language",
    "grade",
    "status",
    "topic",
    "error_class",
    "latency_s",
    "ttft_s",
    "prompt_tokens",
    "completion_tokens",
    "user_retry",
    "fallback",
    "stream",
    "messages",
    "answer",
    "rating",
    "tags",
    "relevance",
    "comment",
    "rated_at",
)
"""Stored columns in :class:`Interaction` field order (plus ``recorded`` in the tables)."""

FEEDBACK_COLUMNS: tuple[str, ...] = ("rating", "tags", "relevance", "comment", "rated_at")
"""Columns that belong to the feedback rather than to the request."""


@dataclass(frozen=True, slots=True)
class Feedback:
    """A student's rating of one interaction, as ``POST /v1/feedback`` delivers it."""

    request_id: str
    rating: int
    tags: list[str] = field(default_factory=list)
    relevance: float | None = None
    comment: str | None = None
    rated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class UserRetryMark:
    """A logged request that the retry detector found the student asked again.

    Found seconds after the request was logged, so only its flag is written:
    the detector need not hold the whole record until then.
    """

    request_id: str


@dataclass(frozen=True, slots=True)
class InteractionFilter:
    """Which interactions :meth:`InteractionLog.iter_interactions` yields.

    ``since`` is inclusive and ``until`` exclusive (unix seconds); ``None``
    fields do not filter.
    """

    since: float | None = None
    until: float | None = None
    track: str | None = None
    segment: str | None = None
    variant: str | None = None
    language: str | None = None
    subject: str | None = None
    min_rating: int | None = None
    rated_only: bool = False


class InteractionLog(Protocol):
    """Durable store of interactions; every method is safe to call concurrently."""

    async def migrate(self) -> None:
        """Create or upgrade the schema to the newest version (idempotent)."""

    async def ping(self) -> None:
        """Return if the store can take a write now; raise if it cannot.

        The writer asks after a failed write to tell an outage (spool and wait)
        from a record the store refuses (isolate it, write the others).
        """

    async def write_batch(self, interactions: list[Interaction]) -> None:
        """Upsert interactions by ``request_id`` in one transaction.

        Rewriting a record is harmless; stored feedback survives unless the
        record carries newer feedback of its own.
        """

    async def apply_feedback(self, feedback: Feedback) -> bool:
        """Store feedback, replacing earlier feedback for the same request.

        Returns ``False`` when no interaction with that id is stored (yet); the
        feedback is then kept and joined when the interaction is written.
        """

    async def apply_feedback_batch(self, feedback: Sequence[Feedback]) -> None:
        """Store feedback as :meth:`apply_feedback` on each in order would, in one round trip.

        All or nothing: a refused record fails the whole batch, so the caller
        can split it and keep the others.
        """

    async def mark_user_retries(self, request_ids: Sequence[str]) -> None:
        """Set ``user_retry`` on the stored interactions with these ids, in one round trip.

        An id with no stored interaction is skipped: its record was dropped or
        refused, and the retry is counted in the window stats all the same.
        """

    async def get(self, request_id: str) -> Interaction | None:
        """The stored interaction, or ``None`` if it was never written."""

    def iter_interactions(
        self, where: InteractionFilter | None = None, *, batch_size: int = 1000
    ) -> AsyncIterator[Interaction]:
        """Stream matching interactions in ``(created_at, request_id)`` order.

        Reads ``batch_size`` rows per query (keyset pagination), so memory
        stays flat however many rows match and no transaction stays open
        while the consumer works.
        """

    async def purge(self, older_than: float) -> int:
        """Delete rows created before unix time ``older_than``; returns how many."""

    async def aclose(self) -> None:
        """Release connections and threads."""


def latest_per_request(interactions: Iterable[Interaction]) -> list[Interaction]:
    """Keep the last record for each ``request_id`` (one statement may touch a row once)."""
    return list({ix.request_id: ix for ix in interactions}.values())


def upsert_sql(values: str) -> str:
    """``INSERT ... ON CONFLICT`` for one interaction, in SQL both dialects accept.

    ``values`` renders the parameters of :data:`COLUMNS`. Request columns are
    overwritten (a placeholder left by early feedback becomes a real row);
    feedback columns keep what is stored unless the record carries newer feedback.
    """
    newer = (
        "excluded.rated_at IS NOT NULL AND (interactions.rated_at IS NULL"
        " OR excluded.rated_at >= interactions.rated_at)"
    )
    sets = ["recorded = TRUE"]
    for name in COLUMNS[1:]:
        if name in FEEDBACK_COLUMNS:
            sets.append(
                f"{name} = CASE WHEN {newer} THEN excluded.{name} ELSE interactions.{name} END"
            )
        else:
            sets.append(f"{name} = excluded.{name}")
    # Identifiers come from constants only; values are always parameters.
    insert = f"INSERT INTO interactions ({', '.join(COLUMNS)}) VALUES ({values})"  # noqa: S608
    return f"{insert} ON CONFLICT (request_id) DO UPDATE SET {', '.join(sets)}"


def where_sql(
    where: InteractionFilter,
    after: tuple[float, str] | None,
    placeholder: Callable[[int], str],
) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` clause and parameters for one page of a filtered scan.

    ``after`` is the keyset cursor (last row's ``created_at, request_id``);
    ``placeholder(n)`` renders the n-th parameter (1-based) in the dialect.
    """
    clauses = ["recorded"]
    params: list[Any] = []

    def add(template: str, value: Any) -> None:
        params.append(value)
        clauses.append(template.format(placeholder(len(params))))

    if after is not None:
        params.extend(after)
        n = len(params)
        clauses.append(f"(created_at, request_id) > ({placeholder(n - 1)}, {placeholder(n)})")
    if where.since is not None:
        add("created_at >= {}", where.since)
    if where.until is not None:
        add("created_at < {}", where.until)
    for name in ("track", "segment", "variant", "language", "subject"):
        value = getattr(where, name)
        if value is not None:
            add(f"{name} = {{}}", value)
    if where.min_rating is not None:
        add("rating >= {}", where.min_rating)
    if where.rated_only:
        clauses.append("rating IS NOT NULL")
    return " AND ".join(clauses), params
