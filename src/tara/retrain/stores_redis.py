"""The loop's stores in Redis, shared by the controller, the gateways' admin API and the CLI.

Runs live in two hashes like rollouts (names from :mod:`tara.keys`):
``{ns}:runs`` maps run id to the run's JSON and ``{ns}:runs:revision`` to
its revision; the ledger is the field ``ledger`` of ``{ns}:triggers`` and
``{ns}:triggers:revision``. Every save is the rollout store's Lua script
(:data:`~tara.rollout.rollout_store_redis.FENCED_SAVE`): the fence check,
the revision compare and both writes are one atomic step on the server.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tara import keys
from tara.retrain.run import Run
from tara.retrain.stores import (
    Ledger,
    StoredLedger,
    StoredRun,
    StoreError,
    decode_ledger,
    decode_run,
    encode_ledger,
    encode_run,
    oldest_first,
)
from tara.rollout.rollout_store import StaleLeaderError, check_revision, stale_message
from tara.rollout.rollout_store_redis import FENCED_SAVE, leader_token_key

_UNREACHABLE = (RedisError, OSError)
LEDGER = "ledger"


class _Records:
    """One hash of JSON records and one of their revisions, saved with :data:`FENCED_SAVE`."""

    def __init__(self, client: aioredis.Redis, namespace: str, name: str) -> None:
        self.redis = client
        self.records_key = keys.key(namespace, name)
        self.revisions_key = keys.key(namespace, name, "revision")
        self._token_key = leader_token_key(namespace)
        self._save = client.register_script(FENCED_SAVE)

    async def get(self, key: str) -> tuple[bytes | str, int] | None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hget(self.records_key, key)
                pipe.hget(self.revisions_key, key)
                raw, revision = await pipe.execute()
        except _UNREACHABLE as exc:
            raise _unreachable(f"read {key}", exc) from exc
        if raw is None:
            return None
        try:
            return raw, int(revision or 0)
        except ValueError as exc:
            msg = f"stored revision of {key} is not an integer: {revision!r}"
            raise StoreError(msg) from exc

    async def values(self) -> list[bytes | str]:
        try:
            return list(await self.redis.hvals(self.records_key))
        except _UNREACHABLE as exc:
            raise _unreachable(f"list {self.records_key}", exc) from exc

    async def put(self, key: str, body: bytes, expected_revision: int, fence: int | None) -> bool:
        check_revision(expected_revision)
        try:
            reply = await self._save(
                keys=[self.records_key, self.revisions_key, self._token_key],
                args=[key, expected_revision, body, "" if fence is None else fence],
            )
        except _UNREACHABLE as exc:
            raise _unreachable(f"save {key}", exc) from exc
        reply = int(reply)
        if reply < 0 and fence is not None:
            raise StaleLeaderError(stale_message(fence, -reply))
        return reply == 1


class RedisRunStore:
    """A :class:`~tara.retrain.stores.RunStore` in Redis under ``namespace``."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._records = _Records(client, namespace, keys.RUNS)

    async def get(self, run_id: str) -> Run | None:
        """The run, or ``None``."""
        stored = await self.load(run_id)
        return None if stored is None else stored.run

    async def load(self, run_id: str) -> StoredRun | None:
        """The run and its revision, read in one transaction."""
        record = await self._records.get(run_id)
        return None if record is None else StoredRun(decode_run(record[0]), record[1])

    async def list(self) -> list[Run]:
        """Every run, oldest first."""
        return oldest_first([decode_run(raw) for raw in await self._records.values()])

    async def save(self, run: Run, expected_revision: int, fence: int | None = None) -> bool:
        """Store ``run`` iff the stored revision is ``expected_revision`` (atomic)."""
        return await self._records.put(run.id, encode_run(run), expected_revision, fence)


class RedisLedgerStore:
    """A :class:`~tara.retrain.stores.LedgerStore` in Redis under ``namespace``."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._records = _Records(client, namespace, keys.TRIGGERS)

    async def load(self) -> StoredLedger:
        """The ledger and its revision (empty at revision 0 before the first save)."""
        record = await self._records.get(LEDGER)
        if record is None:
            return StoredLedger(Ledger(), 0)
        return StoredLedger(decode_ledger(record[0]), record[1])

    async def save(self, ledger: Ledger, expected_revision: int, fence: int | None = None) -> bool:
        """Store ``ledger`` iff the stored revision is ``expected_revision`` (atomic)."""
        return await self._records.put(LEDGER, encode_ledger(ledger), expected_revision, fence)


def _unreachable(doing: str, exc: BaseException) -> StoreError:
    return StoreError(f"cannot {doing} in Redis: {type(exc).__name__}: {exc}")
