"""Where the routing table lives between processes: the ``RoutingStore`` protocol.

The rollout controller publishes weight changes through a store and every
gateway replica polls the same store (through
:class:`~tara.rollout.routing_cache.RoutingCache`). Two implementations:
:mod:`tara.rollout.routing_store_memory` (one process) and
:mod:`tara.rollout.routing_store_redis` (shared by replicas).

Versions and check-and-set, precisely:

* The stored version is the ``version`` of the last saved table, or ``0``
  when nothing was ever saved. Versions start at 1 and only grow.
* ``save_table(table, expected_version)`` writes ``table`` if and only if
  the stored version equals ``expected_version`` at the moment of the write
  (atomically), and returns whether it did. The caller stamps the new
  version itself: ``table.version`` must be ``expected_version + 1``,
  otherwise :class:`ValueError` is raised before touching the store. So a
  writer reads the table, derives the next one with ``version + 1``, saves
  with ``expected_version=version``, and on ``False`` reloads and decides
  again: of several concurrent writers exactly one wins each version.
* Failures to reach the store, and a stored table that cannot be decoded,
  raise :class:`RoutingStoreError`; a lost check-and-set is not an error.
"""

from __future__ import annotations

from typing import Protocol

from tara.rollout.routing import RoutingTable


class RoutingStoreError(Exception):
    """The store could not be read or written, or holds a malformed table."""


class RoutingStore(Protocol):
    """Load and check-and-set the shared routing table."""

    async def load_version(self) -> int:
        """The stored table's version (``0`` if none): a cheap probe before loading."""
        ...

    async def load_table(self) -> RoutingTable | None:
        """The stored table, or ``None`` if none was ever saved."""
        ...

    async def save_table(self, table: RoutingTable, expected_version: int) -> bool:
        """Store ``table`` iff the stored version is ``expected_version``; see the module doc."""
        ...

    async def aclose(self) -> None:
        """Release what the store opened itself (never a client it was handed)."""
        ...


def check_next_version(table: RoutingTable, expected_version: int) -> None:
    """Raise :class:`ValueError` unless ``table`` is the version after ``expected_version``."""
    if expected_version < 0:
        msg = f"expected_version must be >= 0, got {expected_version}"
        raise ValueError(msg)
    if table.version != expected_version + 1:
        msg = (
            f"a table saved over version {expected_version} must carry version "
            f"{expected_version + 1}, got {table.version}"
        )
        raise ValueError(msg)
