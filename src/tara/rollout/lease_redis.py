"""The controller's leader lease in Redis, shared by every controller of one namespace.

See :mod:`tara.rollout.lease` for what a lease promises; this is the
implementation production runs (the memory one is there). Kept in its own
module so that a process on memory state never imports the Redis client.
"""

from __future__ import annotations

import logging
import time
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tara import keys
from tara.rollout.lease import OWNER_SUFFIX, SAFETY, Clock, positive_ttl
from tara.rollout.rollout_store_redis import leader_token_key

log = logging.getLogger(__name__)

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
