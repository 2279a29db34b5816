"""The controller's leader lease: only one controller acts at a time, and a stale one is fenced.

A :class:`Lease` is acquired (or renewed) at the start of every tick; the
controller acts only while it holds it. Each new tenure gets a *fencing
token*, an integer that only grows; every write the leader makes carries it,
and the rollout store refuses a write whose token is not the current one. So
a leader that stalled past its lease (a long GC pause, a frozen VM) and then
wakes up to write is refused even though it still believes it leads.

Two implementations:

* :class:`RedisLease` — ``{ns}:leader:owner`` holds ``owner|token`` with a
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

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tara import keys
from tara.rollout.rollout_store_redis import leader_token_key

log = logging.getLogger(__name__)

Clock = Callable[[], float]

SAFETY = 0.2
"""Share of the TTL a lease gives up early, for clock drift and slow round trips."""

OWNER_SUFFIX = "owner"

# KEYS: owner key, token key. ARGV: owner id, ttl ms. Returns the tenure's token, or 0.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if not held then
    local token = redis.call('INCR', KEYS[2])
    redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
    return token
end
local sep = string.find(held, '|', 1, true)
if sep and string.sub(held, 1, sep - 1) == ARGV[1] then
    local token = tonumber(string.sub(held, sep + 1))
    if token == tonumber(redis.call('GET', KEYS[2]) or '0') then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return token
    end
end
return 0
"""

# KEYS: owner key. ARGV: owner id, token. Deletes the lock only if it is this tenure's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] .. '|' .. ARGV[2] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


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


class RedisLease:
    """A :class:`Lease` in Redis, shared by every controller of one namespace."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        ttl: float,
        *,
        owner: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._redis = redis
        self.owner_key = keys.key(namespace, keys.LEADER, OWNER_SUFFIX)
        self.token_key = leader_token_key(namespace)
        self.owner = owner or uuid.uuid4().hex
        """Unique per lease object, so a restarted controller never inherits a tenure."""
        self._ttl = positive_ttl(ttl)
        self._clock = clock
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._token: int | None = None
        self._valid_until = 0.0

    @property
    def token(self) -> int | None:
        """The tenure's fencing token while the lease is locally still valid."""
        if self._token is None or self._clock() >= self._valid_until:
            return None
        return self._token

    async def acquire(self) -> bool:
        """Take the lock if free, renew it if ours; ``False`` if another leads or Redis fails."""
        started = self._clock()
        try:
            token = int(
                await self._acquire(
                    keys=[self.owner_key, self.token_key],
                    args=[self.owner, max(1, round(self._ttl * 1000))],
                )
            )
        except (RedisError, OSError) as exc:
            log.warning("leader lease: cannot reach Redis (%s); not leading", exc)
            self._token = None
            return False
        if not token:
            if self._token is not None:
                log.warning("leader lease: lost leadership (tenure %d)", self._token)
            self._token = None
            return False
        if token != self._token:
            log.info("leader lease: leading as %s with fencing token %d", self.owner, token)
        self._token = token
        # Measured from before the round trip: the server's TTL started no earlier.
        self._valid_until = started + self._ttl * (1 - SAFETY)
        return True

    async def release(self) -> None:
        """Delete the lock if this tenure still holds it (the token counter stays)."""
        token, self._token = self._token, None
        if token is None:
            return
        try:
            await self._release(keys=[self.owner_key], args=[self.owner, token])
        except (RedisError, OSError) as exc:  # it expires by itself
            log.warning("leader lease: cannot release (%s); it will expire", exc)

    async def current_token(self) -> int:
        """The newest token ever issued in this namespace (``0`` if none)."""
        raw = await self._redis.get(self.token_key)
        return int(raw) if raw is not None else 0


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
