"""The controller's leader lease: only one controller acts at a time, and a stale one is fenced.

A :class:`Lease` is acquired (or renewed) at the start of every tick; the
controller acts only while it holds it. Each new tenure gets a *fencing
token*, an integer that only grows; every write the leader makes carries it,
and the rollout store refuses a write whose token is not the current one. So
a leader that stalled past its lease (a long GC pause, a frozen VM) and then
wakes up to write is refused even though it still believes it leads.

Two implementations:

* :class:`tara.rollout.lease_redis.RedisLease` — ``{ns}:leader:owner`` holds ``owner|token`` with a
  TTL; ``{ns}:leader:token`` is the fencing counter (``INCR`` per tenure).
  Acquire, renew and release are Lua scripts, so "is it still mine?" and the
  write are one atomic step (a plain ``SET NX`` + ``INCR`` pair could leave a
  lock without a token if the client died between them).
* :class:`MemoryLease` — one process: leadership among the leases that share
  one :class:`MemoryLeaseBoard`, for ``tara demo`` and tests.

Besides the server-side TTL, each lease stops trusting itself a little before
its TTL would run out on its own clock (``ttl * (1 - safety)``), so it does
not start a write it is sure to lose.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]

SAFETY = 0.2
"""Share of the TTL a lease gives up early, for clock drift and slow round trips."""

OWNER_SUFFIX = "owner"


class Lease(Protocol):
    """Leadership among controllers, with a fencing token per tenure."""

    @property
    def token(self) -> int | None:
        """The current tenure's fencing token, or ``None`` when not (surely) leader."""
        ...

    async def acquire(self) -> bool:
        """Become leader, or stay leader by renewing; whether this lease leads now.

        Never raises for store trouble: an unreachable store means "not leader".
        """
        ...

    async def release(self) -> None:
        """Give leadership up at once (graceful shutdown), if this lease holds it."""
        ...


def positive_ttl(ttl: float) -> float:
    """``ttl``, or :class:`ValueError` unless it is positive."""
    if ttl <= 0:
        msg = f"lease ttl must be positive, got {ttl}"
        raise ValueError(msg)
    return ttl


@dataclass(slots=True)
class MemoryLeaseBoard:
    """Who leads among the :class:`MemoryLease` objects of one process."""

    owner: str | None = None
    expires_at: float = 0.0
    token: int = 0
    """The newest fencing token issued; a memory rollout store may check writes against it."""


class MemoryLease:
    """A :class:`Lease` in process memory (one controller process, or tests)."""

    def __init__(
        self,
        ttl: float = 30.0,
        *,
        board: MemoryLeaseBoard | None = None,
        owner: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.board = board if board is not None else MemoryLeaseBoard()
        self.owner = owner or uuid.uuid4().hex
        self._ttl = positive_ttl(ttl)
        self._clock = clock
        self._token: int | None = None

    @property
    def token(self) -> int | None:
        """The tenure's token while this lease holds the board."""
        b = self.board
        if self._token is None or b.owner != self.owner or b.token != self._token:
            return None
        return self._token if self._clock() < b.expires_at else None

    async def acquire(self) -> bool:
        """Take the board if free or expired, renew it if ours."""
        b, now = self.board, self._clock()
        if b.owner == self.owner and b.token == self._token and now < b.expires_at:
            b.expires_at = now + self._ttl
            return True
        if b.owner is not None and now < b.expires_at:
            self._token = None
            return False
        b.token += 1
        b.owner, b.expires_at = self.owner, now + self._ttl
        self._token = b.token
        return True

    async def release(self) -> None:
        """Free the board if this lease holds it."""
        if self.token is not None:
            self.board.owner = None
        self._token = None
