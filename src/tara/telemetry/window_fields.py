"""The field codes of window stats' flat form: ``{field: number}``, one Redis hash per bucket.

The codes are part of the stored format (a Redis bucket outlives a deploy and
replicas of two versions write the same hashes), so they never change. They
are short because every replica writes several for every request. A plain
field counts one thing (:data:`REQUESTS`); a family field is
``{family}:{member}``, one counter per error class, histogram bucket, rating
or tag.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

REQUESTS: Final = "req"
LATENCY_SUM: Final = "lat_sum"
"""Seconds of latency summed over answered requests."""
RELEVANCE_SUM: Final = "rel_sum"
RELEVANCE_COUNT: Final = "rel_n"
USER_RETRIES: Final = "uretry"
PROMPT_TOKENS: Final = "tok_in"
COMPLETION_TOKENS: Final = "tok_out"

FLOAT_FIELDS: Final = frozenset({LATENCY_SUM, RELEVANCE_SUM})
"""Fields that hold sums of fractions; every other field counts whole things."""


class Family(enum.StrEnum):
    """Fields with one counter per member: ``err:timeout``, ``lat:12``, ``rat:5``, ``tag:wrong``."""

    ERROR = "err"
    """Failed requests by error class."""
    LATENCY = "lat"
    """Answered requests by latency histogram bucket index."""
    TTFT = "ttft"
    """Streamed answers by time-to-first-token histogram bucket index."""
    RATING = "rat"
    """Ratings by value, 1..5."""
    TAG = "tag"
    """Feedback tags by tag."""


def member(family: Family, name: object) -> str:
    """The field of ``name`` in ``family`` (``member(Family.RATING, 5) == "rat:5"``)."""
    return f"{family.value}:{name}"


def split(field: str) -> tuple[str, str]:
    """Family (or plain field) and member of a field code.

    ``"rat:5"`` → ``("rat", "5")``; ``"req"`` → ``("req", "")``.
    """
    kind, _, name = field.partition(":")
    return kind, name


def add_feedback(
    into: dict[str, float],
    rating: int | None,
    tags: Sequence[str],
    relevance: float | None,
    sign: int = 1,
) -> None:
    """Add (``sign`` 1) or take back (-1) the fields of one request's feedback, in place."""
    if rating is not None:
        _bump(into, member(Family.RATING, rating), sign)
    for tag in set(tags):
        _bump(into, member(Family.TAG, tag), sign)
    if relevance is not None:
        _bump(into, RELEVANCE_COUNT, sign)
        _bump(into, RELEVANCE_SUM, sign * relevance)


def _bump(into: dict[str, float], name: str, value: float) -> None:
    into[name] = into.get(name, 0) + value
