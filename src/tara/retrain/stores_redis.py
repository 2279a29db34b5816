"""The loop's stores in Redis, shared by the controller, the gateways' admin API and the CLI.

Runs live in two hashes like rollouts (names from :mod:`tara.keys`):
``{ns}:runs`` maps run id to the run's JSON and ``{ns}:runs:revision`` to
its revision; the ledger is the field ``ledger`` of ``{ns}:triggers`` and
``{ns}:triggers:revision``. Both are kept by the rollout store's
:class:`~tara.rollout.rollout_store_redis.FencedRecords`: every save is one
Lua script, so the fence check, the revision compare and both writes are one
atomic step on the server.
"""

from __future__ import annotations

import redis.asyncio as aioredis

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
from tara.rollout.rollout_store_redis import FencedRecords

LEDGER = "ledger"


class RedisRunStore:
    """A :class:`~tara.retrain.stores.RunStore` in Redis under ``namespace``."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._records = FencedRecords(client, namespace, keys.RUNS, StoreError)

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
        self._records = FencedRecords(client, namespace, keys.TRIGGERS, StoreError)

    async def load(self) -> StoredLedger:
        """The ledger and its revision (empty at revision 0 before the first save)."""
        record = await self._records.get(LEDGER)
        if record is None:
            return StoredLedger(Ledger(), 0)
        return StoredLedger(decode_ledger(record[0]), record[1])

    async def save(self, ledger: Ledger, expected_revision: int, fence: int | None = None) -> bool:
        """Store ``ledger`` iff the stored revision is ``expected_revision`` (atomic)."""
        return await self._records.put(LEDGER, encode_ledger(ledger), expected_revision, fence)
