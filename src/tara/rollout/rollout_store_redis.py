"""Rollout records in Redis, shared by the controller and every gateway's admin API.

Two hashes (names from :mod:`tara.keys`): ``{ns}:rollouts`` maps rollout id
to the record's JSON and ``{ns}:rollouts:revision`` maps it to the record's
revision. A save is one Lua script that checks the fencing token in
``{ns}:leader:token``, compares the revision and writes both fields, so the
check and the write are atomic and a lost race is a ``0`` reply. Reads of a
record and its revision go in one ``MULTI`` so they always match.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tara import keys
from tara.rollout.model import Rollout
from tara.rollout.rollout_store import (
    RolloutStoreError,
    StaleLeaderError,
    Stored,
    check_revision,
    decode_rollout,
    encode_rollout,
    oldest_first,
    stale_message,
)

LEADER_TOKEN = "token"  # noqa: S105 - a key name, not a secret
"""Suffix of the fencing-token key below :data:`tara.keys.LEADER`."""

# KEYS: records, revisions, leader token. ARGV: id, expected revision, JSON, fence ("" = none).
# Replies: 1 saved, 0 lost the check-and-set, -N refused: token N is newer than the fence.
FENCED_SAVE = """
if ARGV[4] ~= '' then
    local newest = tonumber(redis.call('GET', KEYS[3]) or '0')
    if newest > tonumber(ARGV[4]) then
        return -newest
    end
end
local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if stored ~= tonumber(ARGV[2]) then
    return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], stored + 1)
return 1
"""

"""Check-and-set of one record of a hash pair (records, revisions), fenced by the leader
token: shared by every record the controller writes (rollouts, fine-tuning runs)."""

_UNREACHABLE = (RedisError, OSError)


def leader_token_key(namespace: str) -> str:
    """``{ns}:leader:token``: the newest fencing token, an integer bumped on each acquisition."""
    return keys.key(namespace, keys.LEADER, LEADER_TOKEN)


class FencedRecords:
    """One hash of JSON records and one of their revisions, saved with :data:`FENCED_SAVE`.

    ``error`` is the store's own error type: what an unreachable Redis or a
    corrupt revision raises.
    """

    def __init__(
        self, client: aioredis.Redis, namespace: str, name: str, error: type[Exception]
    ) -> None:
        self.redis = client
        self.records_key = keys.key(namespace, name)
        self.revisions_key = keys.key(namespace, name, "revision")
        self._token_key = leader_token_key(namespace)
        self._save = client.register_script(FENCED_SAVE)
        self._error = error

    async def get(self, key: str) -> tuple[bytes | str, int] | None:
        """The record's JSON and its revision, read in one transaction; ``None`` if absent."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hget(self.records_key, key)
                pipe.hget(self.revisions_key, key)
                raw, revision = await pipe.execute()
        except _UNREACHABLE as exc:
            raise self._unreachable(f"read {key}", exc) from exc
        if raw is None:
            return None
        try:
            return raw, int(revision or 0)
        except ValueError as exc:
            msg = f"stored revision of {key} is not an integer: {revision!r}"
            raise self._error(msg) from exc

    async def values(self) -> list[bytes | str]:
        """Every record's JSON."""
        try:
            return list(await self.redis.hvals(self.records_key))
        except _UNREACHABLE as exc:
            raise self._unreachable(f"list {self.records_key}", exc) from exc

    async def put(self, key: str, body: bytes, expected_revision: int, fence: int | None) -> bool:
        """Store ``body`` iff the stored revision is ``expected_revision`` and ``fence`` is
        the newest leader token (:class:`StaleLeaderError` if a newer one exists)."""
        check_revision(expected_revision)
        try:
            reply = await self._save(
                keys=[self.records_key, self.revisions_key, self._token_key],
                args=[key, expected_revision, body, "" if fence is None else fence],
            )
        except _UNREACHABLE as exc:
            raise self._unreachable(f"save {key}", exc) from exc
        reply = int(reply)
        if reply < 0 and fence is not None:
            raise StaleLeaderError(stale_message(fence, -reply))
        return reply == 1

    def _unreachable(self, doing: str, exc: BaseException) -> Exception:
        return self._error(f"cannot {doing} in Redis: {type(exc).__name__}: {exc}")


class RedisRolloutStore:
    """A :class:`~tara.rollout.rollout_store.RolloutStore` in Redis under ``namespace``."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._redis = client
        self._records = FencedRecords(client, namespace, keys.ROLLOUTS, RolloutStoreError)
        self.records_key = self._records.records_key
        self.revisions_key = self._records.revisions_key

    async def get(self, rollout_id: str) -> Rollout | None:
        """The rollout, or ``None``."""
        stored = await self.load(rollout_id)
        return None if stored is None else stored.rollout

    async def load(self, rollout_id: str) -> Stored | None:
        """The rollout and its revision, read in one transaction."""
        record = await self._records.get(rollout_id)
        return None if record is None else Stored(decode_rollout(record[0]), record[1])

    async def list(self) -> list[Rollout]:
        """Every rollout, oldest first."""
        return oldest_first([decode_rollout(raw) for raw in await self._records.values()])

    async def save(
        self, rollout: Rollout, expected_revision: int, fence: int | None = None
    ) -> bool:
        """Store ``rollout`` iff the stored revision is ``expected_revision`` (atomic)."""
        body = encode_rollout(rollout)
        return await self._records.put(rollout.id, body, expected_revision, fence)
