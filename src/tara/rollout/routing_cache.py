"""The gateway's local copy of the routing table, refreshed in the background.

The request path reads :attr:`RoutingCache.table`, a plain attribute: it never
waits on the store and never raises. A background task polls the store every
``interval`` seconds; each poll reads only the small version key and fetches
the table when the version moved (forwards or backwards: the store is the
truth, even after it lost its data). When the store is unreachable or holds a
malformed table, the last good table stays in service (the configured stable
models if none was ever loaded), one warning is logged when refreshes start
failing and one info line when they succeed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping

from tara.loops import poll
from tara.rollout.routing import RoutingTable
from tara.rollout.routing_store import RoutingStore, RoutingStoreError

log = logging.getLogger(__name__)


class RoutingCache:
    """A routing table kept in memory and refreshed from a :class:`RoutingStore`.

    ``stable_models`` (track → stable model, from the settings) are merged in
    with :meth:`RoutingTable.with_defaults`, so configured tracks route even
    before the first load. ``refresh_timeout`` bounds one refresh, so a hung
    store can delay a change but never stall the loop. The cache does not
    close the store: whoever built it does.
    """

    def __init__(
        self,
        store: RoutingStore,
        stable_models: Mapping[str, str],
        interval: float = 0.5,
        *,
        refresh_timeout: float = 1.0,
    ) -> None:
        self._store = store
        self._defaults = dict(stable_models)
        self._interval = interval
        self._refresh_timeout = refresh_timeout
        self._table = RoutingTable().with_defaults(self._defaults)
        self._loaded_version: int | None = None  # None: nothing loaded yet
        self._healthy = False
        self._failing = False
        self._failures_in_row = 0
        self._refresh_errors = 0
        self._last_success: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def table(self) -> RoutingTable:
        """The current table, configured tracks included; never blocks, never raises."""
        return self._table

    @property
    def healthy(self) -> bool:
        """Whether the last refresh succeeded (``False`` before the first one)."""
        return self._healthy

    def age_seconds(self) -> float:
        """Seconds since the last successful refresh (``inf`` if none yet)."""
        if self._last_success is None:
            return math.inf
        return time.monotonic() - self._last_success

    @property
    def refresh_errors(self) -> int:
        """Refreshes that failed since the cache was built."""
        return self._refresh_errors

    async def refresh_once(self) -> bool:
        """Load the table once if it changed; keep the last good one on error.

        Returns whether the refresh succeeded. Never raises (except on cancel).
        """
        return await self._refresh(self._refresh_timeout)

    async def start(self, initial_timeout: float = 1.0) -> None:
        """Load once, waiting at most ``initial_timeout`` seconds, then poll in the background.

        Returns on time even if the store is unreachable: the cache then serves
        the configured stable models and keeps trying in the background.
        """
        if self._task is not None:
            return
        await self._refresh(min(initial_timeout, self._refresh_timeout))
        self._task = asyncio.create_task(self._run(), name="routing-cache")

    async def stop(self) -> None:
        """Stop the background polling (idempotent); the table stays readable."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        async for _ in poll(self._interval):
            await self.refresh_once()

    async def _refresh(self, timeout: float) -> bool:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                table = await self._fetch_if_changed()
        except Exception as exc:  # every failure is survivable: keep serving
            self._failed(exc, timeout)
            return False
        if table is not None:
            self._install(table)
        self._succeeded()
        return True

    async def _fetch_if_changed(self) -> RoutingTable | None:
        """The stored table if it differs from the loaded one, else ``None``."""
        version = await self._store.load_version()
        if version == self._loaded_version:
            return None
        stored = await self._store.load_table()
        return RoutingTable() if stored is None else stored

    def _install(self, stored: RoutingTable) -> None:
        self._table = stored.with_defaults(self._defaults)
        if self._loaded_version is not None:
            log.info("routing table version %d -> %d", self._loaded_version, stored.version)
        self._loaded_version = stored.version

    def _succeeded(self) -> None:
        if self._failing:
            log.info(
                "routing store reachable again after %d failed refreshes; table version %d",
                self._failures_in_row,
                self._table.version,
            )
        self._healthy = True
        self._failing = False
        self._failures_in_row = 0
        self._last_success = time.monotonic()

    def _failed(self, exc: Exception, timeout: float) -> None:
        self._healthy = False
        self._refresh_errors += 1
        self._failures_in_row += 1
        if self._failing:
            return
        self._failing = True
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        source = "last good" if self._loaded_version is not None else "configured default"
        log.warning(
            "routing table refresh failed (%s); serving the %s table (version %d) until it is back",
            reason,
            source,
            self._table.version,
            # A store error is expected operations; anything else is a bug worth a trace.
            exc_info=not isinstance(exc, (RoutingStoreError, TimeoutError)),
        )
