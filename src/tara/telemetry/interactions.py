"""The interaction record: one finished request as the interaction log stores it.

Written by the gateway once a request ends (answer reassembled from the
stream), joined later by the student's feedback, read by the triggers and the
fine-tuning pipeline. The student id is never stored raw: ``student_hash`` is
an HMAC of it under a secret key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

OnDrop = Callable[[str, int], None]
"""Told ``(reason, count)`` when a sink loses records for good (a metric counts them)."""

Capture = Literal["full", "metadata", "off"]
"""How much of each interaction is logged: text and all, metadata only, nothing."""

CANARY_ATTEMPT_SUFFIX = "-canary"
"""Request-id suffix of the record of a failed canary attempt that stable then answered."""


def canary_attempt_id(request_id: str) -> str:
    """The record id of ``request_id``'s failed canary attempt."""
    return request_id + CANARY_ATTEMPT_SUFFIX


def is_canary_attempt(request_id: str) -> bool:
    """Whether a record id names a failed canary attempt (not a request a student sent)."""
    return request_id.endswith(CANARY_ATTEMPT_SUFFIX)


@dataclass(slots=True)
class Interaction:
    """One request through the gateway, with the feedback that joined it."""

    request_id: str
    created_at: float
    """Unix time (seconds) when the request arrived."""
    track: str
    segment: str
    variant: str
    model: str
    student_hash: str | None
    subject: str | None
    language: str | None
    grade: str | None
    status: int
    """HTTP status sent to the client (200 for a good answer)."""
    topic: str | None = None
    """The topic the app named (``X-Tara-Topic`` / ``metadata.topic``); the triggers derive
    one from the question when it is ``None``."""
    error_class: str | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    user_retry: bool = False
    fallback: bool = False
    """Served by stable after the canary failed (the canary's attempt is its own record)."""
    stream: bool = False
    messages: list[dict[str, Any]] | None = None
    """Request messages; ``None`` when capture is ``metadata``."""
    answer: str | None = None
    """Answer text reassembled from the stream; ``None`` when capture is ``metadata``."""
    rating: int | None = None
    tags: list[str] = field(default_factory=list)
    relevance: float | None = None
    comment: str | None = None
    rated_at: float | None = None


class InteractionSink(Protocol):
    """Something that takes finished interactions: metrics, window stats, the log.

    ``record`` is called on the request path, so it must neither block nor
    raise: a sink that does I/O queues the record and writes in the background.
    """

    def record(self, interaction: Interaction) -> None:
        """Take one finished interaction."""


class Labelled(Protocol):
    """What a request is counted under: an :class:`Interaction`, or a retry found later."""

    @property
    def created_at(self) -> float: ...
    @property
    def track(self) -> str: ...
    @property
    def segment(self) -> str: ...
    @property
    def variant(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...
