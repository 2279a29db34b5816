"""Rollout records in process memory, for ``tara demo`` and one-process setups."""

from __future__ import annotations

from collections.abc import Callable

from tara.rollout import rollout_store as shared
from tara.rollout.model import Rollout
from tara.rollout.rollout_store import StaleLeaderError, Stored


class MemoryRolloutStore:
    """A :class:`~tara.rollout.rollout_store.RolloutStore` in process memory (one process).

    Records are kept as JSON, so what comes back is exactly what the Redis
    store would return. ``leader_token`` reports the newest fencing token
    (``None``: no lease yet); without it fenced writes are never refused.
    Check-and-set needs no lock: nothing awaits between compare and write.
    """

    def __init__(self, leader_token: Callable[[], int | None] | None = None) -> None:
        self._records: dict[str, tuple[bytes, int]] = {}
        self._leader_token = leader_token

    async def get(self, rollout_id: str) -> Rollout | None:
        """The rollout, or ``None``."""
        stored = await self.load(rollout_id)
        return None if stored is None else stored.rollout

    async def load(self, rollout_id: str) -> Stored | None:
        """The rollout and its revision."""
        record = self._records.get(rollout_id)
        if record is None:
            return None
        return Stored(shared.decode_rollout(record[0]), record[1])

    async def list(self) -> list[Rollout]:
        """Every rollout, oldest first."""
        return shared.oldest_first(
            [shared.decode_rollout(raw) for raw, _ in self._records.values()]
        )

    async def save(
        self, rollout: Rollout, expected_revision: int, fence: int | None = None
    ) -> bool:
        """Store ``rollout`` iff the stored revision is ``expected_revision``."""
        shared.check_revision(expected_revision)
        if fence is not None and self._leader_token is not None:
            newest = self._leader_token()
            if newest is not None and newest > fence:
                raise StaleLeaderError(shared.stale_message(fence, newest))
        _, revision = self._records.get(rollout.id, (b"", 0))
        if revision != expected_revision:
            return False
        self._records[rollout.id] = (shared.encode_rollout(rollout), revision + 1)
        return True
