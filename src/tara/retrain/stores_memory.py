"""The loop's stores in process memory, for ``tara demo`` and one-process setups.

Records are kept as JSON, so what comes back is exactly what the Redis
stores would return. ``leader_token`` reports the newest fencing token
(``None``: no lease yet); without it fenced writes are never refused.
Check-and-set needs no lock: nothing awaits between compare and write.
"""

from __future__ import annotations

from collections.abc import Callable

from tara.retrain.run import Run
from tara.retrain.stores import (
    Ledger,
    StoredLedger,
    StoredRun,
    decode_ledger,
    decode_run,
    encode_ledger,
    encode_run,
    oldest_first,
)
from tara.rollout.rollout_store import StaleLeaderError, check_revision, stale_message

TokenSource = Callable[[], int | None]


class _Records:
    """JSON records with revisions, check-and-set and an optional fence."""

    def __init__(self, leader_token: TokenSource | None) -> None:
        self.records: dict[str, tuple[bytes, int]] = {}
        self._leader_token = leader_token

    def put(self, key: str, body: bytes, expected_revision: int, fence: int | None) -> bool:
        check_revision(expected_revision)
        newest = self._leader_token() if fence is not None and self._leader_token else None
        if fence is not None and newest is not None and newest > fence:
            raise StaleLeaderError(stale_message(fence, newest))
        if self.records.get(key, (b"", 0))[1] != expected_revision:
            return False
        self.records[key] = (body, expected_revision + 1)
        return True


class MemoryRunStore:
    """A :class:`~tara.retrain.stores.RunStore` in process memory."""

    def __init__(self, leader_token: TokenSource | None = None) -> None:
        self._records = _Records(leader_token)

    async def get(self, run_id: str) -> Run | None:
        """The run, or ``None``."""
        stored = await self.load(run_id)
        return None if stored is None else stored.run

    async def load(self, run_id: str) -> StoredRun | None:
        """The run and its revision."""
        record = self._records.records.get(run_id)
        return None if record is None else StoredRun(decode_run(record[0]), record[1])

    async def list(self) -> list[Run]:
        """Every run, oldest first."""
        return oldest_first([decode_run(raw) for raw, _ in self._records.records.values()])

    async def save(self, run: Run, expected_revision: int, fence: int | None = None) -> bool:
        """Store ``run`` iff the stored revision is ``expected_revision``."""
        return self._records.put(run.id, encode_run(run), expected_revision, fence)


LEDGER = "ledger"


class MemoryLedgerStore:
    """A :class:`~tara.retrain.stores.LedgerStore` in process memory."""

    def __init__(self, leader_token: TokenSource | None = None) -> None:
        self._records = _Records(leader_token)

    async def load(self) -> StoredLedger:
        """The ledger and its revision."""
        record = self._records.records.get(LEDGER)
        if record is None:
            return StoredLedger(Ledger(), 0)
        return StoredLedger(decode_ledger(record[0]), record[1])

    async def save(self, ledger: Ledger, expected_revision: int, fence: int | None = None) -> bool:
        """Store ``ledger`` iff the stored revision is ``expected_revision``."""
        return self._records.put(LEDGER, encode_ledger(ledger), expected_revision, fence)
