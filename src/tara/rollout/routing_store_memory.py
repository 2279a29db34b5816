"""The routing table in process memory, for ``tara demo`` and single-process ``tara serve``."""

from __future__ import annotations

from tara.rollout.routing import RoutingTable
from tara.rollout.routing_store import check_next_version


class MemoryRoutingStore:
    """A :class:`~tara.rollout.routing_store.RoutingStore` for one process.

    Check-and-set needs no lock: compare and assign run without an ``await``
    in between, so no other task of the event loop can interleave.
    """

    def __init__(self) -> None:
        self._table: RoutingTable | None = None

    async def load_version(self) -> int:
        """The stored table's version, ``0`` if none."""
        return 0 if self._table is None else self._table.version

    async def load_table(self) -> RoutingTable | None:
        """The stored table, or ``None``."""
        return self._table

    async def save_table(self, table: RoutingTable, expected_version: int) -> bool:
        """Store ``table`` iff the stored version is ``expected_version``."""
        check_next_version(table, expected_version)
        stored = 0 if self._table is None else self._table.version
        if stored != expected_version:
            return False
        # A private copy of the mapping: the caller may keep mutating its dict.
        self._table = RoutingTable(table.version, dict(table.tracks))
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
