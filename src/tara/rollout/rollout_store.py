"""Where rollout records live: the ``RolloutStore`` protocol and what its backends share.

Backends: :mod:`tara.rollout.rollout_store_memory` (one process) and
:mod:`tara.rollout.rollout_store_redis` (shared).

Each record carries a *revision*: ``0`` means "no such record", the first
save makes it ``1`` and every save adds one. ``save(rollout,
expected_revision)`` writes iff the stored revision is ``expected_revision``
at the moment of the write (atomically) and returns whether it did, so of two
writers racing on one rollout (the controller's tick and an operator's
``pause``) exactly one wins and the other reloads and decides again.

Fencing: the controller's leader lease hands out an increasing integer token
on each acquisition (``{ns}:leader:token`` in Redis, see
:mod:`tara.rollout.lease`). A save given ``fence=token`` raises
:class:`StaleLeaderError` when a newer token exists, so a leader that lost
its lease while paused cannot overwrite its successor's decisions.

Failures to reach the store and malformed records raise
:class:`RolloutStoreError`; a lost check-and-set is not an error.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import orjson

from tara.rollout.model import Rollout


class RolloutStoreError(Exception):
    """The store could not be read or written, or holds a malformed record."""


class StaleLeaderError(Exception):
    """A fenced write came from a leader whose token is no longer the newest."""


class Stored(NamedTuple):
    """A rollout as stored, with the revision to pass to the next ``save``."""

    rollout: Rollout
    revision: int


class RolloutStore(Protocol):
    """Load and check-and-set rollout records."""

    async def get(self, rollout_id: str) -> Rollout | None:
        """The rollout, or ``None`` if there is no such record."""
        ...

    async def load(self, rollout_id: str) -> Stored | None:
        """The rollout and its revision, read together."""
        ...

    async def list(self) -> list[Rollout]:
        """Every stored rollout, oldest first (by ``created_at``, then id)."""
        ...

    async def save(
        self, rollout: Rollout, expected_revision: int, fence: int | None = None
    ) -> bool:
        """Store ``rollout`` iff the stored revision is ``expected_revision`` (module doc)."""
        ...


def encode_rollout(rollout: Rollout) -> bytes:
    """The stored JSON form of a rollout."""
    return orjson.dumps(rollout.to_dict())


_MALFORMED = (ValueError, KeyError, TypeError, AttributeError)


def decode_rollout(raw: bytes | str) -> Rollout:
    """Parse a stored record; :class:`RolloutStoreError` if it is malformed."""
    try:
        return Rollout.from_dict(orjson.loads(raw))
    except _MALFORMED as exc:
        msg = f"stored rollout is malformed: {type(exc).__name__}: {exc}"
        raise RolloutStoreError(msg) from exc


def check_revision(expected_revision: int) -> None:
    """Raise :class:`ValueError` for a negative expected revision (a caller bug)."""
    if expected_revision < 0:
        msg = f"expected_revision must be >= 0, got {expected_revision}"
        raise ValueError(msg)


def oldest_first(rollouts: list[Rollout]) -> list[Rollout]:
    """Sort by creation time, then id, so listings are stable."""
    return sorted(rollouts, key=lambda r: (r.created_at, r.id))


def stale_message(fence: int, newest: int) -> str:
    """Why a fenced write was refused."""
    return f"leader token {fence} is stale: token {newest} was issued since"
