"""The routing table in Redis, shared by every gateway replica and the controller.

Two keys (names from :mod:`tara.keys`): ``{ns}:routing:version`` holds the
version as a decimal integer, ``{ns}:routing:table`` the table as JSON
(:meth:`RoutingTable.to_dict`, which carries the same version). Replicas poll
the small version key and fetch the JSON only when it moved.

Check-and-set is one Lua script rather than ``WATCH``/``MULTI``: the compare
and both writes run atomically on the server in a single round trip, it
needs no connection pinned across three round trips, and a lost race is just
a ``0`` reply instead of a ``WatchError`` to catch. Redis Cluster would need
both keys in one hash slot; a plain Redis (or a replica set) is what we run.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tara import keys
from tara.rollout.routing import RoutingTable
from tara.rollout.routing_store import RoutingStoreError, check_next_version

# KEYS: version, table. ARGV: expected version, new version, table JSON.
_CHECK_AND_SET = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if stored ~= tonumber(ARGV[1]) then
    return 0
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

_UNREACHABLE = (RedisError, OSError)
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError)


def decode_table(raw: bytes | str) -> RoutingTable:
    """Parse stored JSON into a table; :class:`RoutingStoreError` if it is malformed."""
    try:
        data: Any = orjson.loads(raw)
        return RoutingTable.from_dict(data)
    except _MALFORMED as exc:
        msg = f"stored routing table is malformed: {type(exc).__name__}: {exc}"
        raise RoutingStoreError(msg) from exc


class RedisRoutingStore:
    """A :class:`~tara.rollout.routing_store.RoutingStore` in Redis under ``namespace``."""

    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self._redis = redis
        self.version_key = keys.key(namespace, keys.ROUTING_VERSION)
        self.table_key = keys.key(namespace, keys.ROUTING_TABLE)
        self._cas = redis.register_script(_CHECK_AND_SET)

    async def load_version(self) -> int:
        """The stored version, ``0`` if none; one ``GET`` of a small key."""
        try:
            raw = await self._redis.get(self.version_key)
        except _UNREACHABLE as exc:
            raise _unreachable("read the routing version", exc) from exc
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError as exc:
            msg = f"stored routing version is not an integer: {raw!r}"
            raise RoutingStoreError(msg) from exc

    async def load_table(self) -> RoutingTable | None:
        """The stored table, or ``None`` if none was ever saved."""
        try:
            raw = await self._redis.get(self.table_key)
        except _UNREACHABLE as exc:
            raise _unreachable("read the routing table", exc) from exc
        return None if raw is None else decode_table(raw)

    async def save_table(self, table: RoutingTable, expected_version: int) -> bool:
        """Store ``table`` iff the stored version is ``expected_version`` (atomic)."""
        check_next_version(table, expected_version)
        payload = orjson.dumps(table.to_dict())
        try:
            won = await self._cas(
                keys=[self.version_key, self.table_key],
                args=[expected_version, table.version, payload],
            )
        except _UNREACHABLE as exc:
            raise _unreachable("save the routing table", exc) from exc
        return bool(won)

    async def aclose(self) -> None:
        """Nothing of its own to release: the Redis client belongs to the caller."""


def _unreachable(doing: str, exc: BaseException) -> RoutingStoreError:
    return RoutingStoreError(f"cannot {doing} in Redis: {type(exc).__name__}: {exc}")
