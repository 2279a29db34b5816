"""The one place that opens the shared state: every command calls :func:`open_state`.

Shared state is what the gateway replicas and the rollout controller of one
deployment must all see: the routing table, the rollout records, the window
stats, the request index (feedback joins), the user-retry memory, the
controller's leader lease, and the fine-tuning loop's runs and trigger
ledger. It lives either

* in **Redis** (``redis_url`` set, ``state_backend`` ``auto`` or ``redis``):
  shared by every process that uses the same ``redis_url`` and
  ``redis_namespace`` — production; or
* in **process memory** (no ``redis_url``, or ``state_backend = "memory"``):
  seen by this process only — ``tara demo``, which runs the gateway and the
  controller side by side, and single-process try-outs.

A command that would act on state no other process can see refuses, saying
what to configure (:class:`StateNotShared`): a separate ``tara controller``
on memory state would judge rollouts no gateway serves, and a gateway on
memory state with no controller embedded next to it refuses to start a
rollout nobody would ever judge.

Adding a store (fine-tuning runs, trigger state, ...) is one field on
:class:`SharedState` and one line in each of :func:`_in_memory` and
:func:`_in_redis`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tara import keys
from tara.retrain.stores import LedgerStore, RunStore
from tara.retrain.stores_memory import MemoryLedgerStore, MemoryRunStore
from tara.rollout.lease import OWNER_SUFFIX, Lease, MemoryLease, MemoryLeaseBoard
from tara.rollout.rollout_store import RolloutStore
from tara.rollout.rollout_store_memory import MemoryRolloutStore
from tara.rollout.routing_store import RoutingStore
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.settings import Settings
from tara.telemetry.request_index import MemoryRequestIndex, RequestIndex
from tara.telemetry.user_retries import MemoryRetryMemory, RetryMemory
from tara.telemetry.window_store import WindowStore
from tara.telemetry.window_store_memory import MemoryWindowStore

if TYPE_CHECKING:
    # The Redis stores and client are imported where Redis state is opened: a
    # process on memory state (``tara serve`` on the embedded defaults, the
    # demo) never loads the Redis client, ~7 MiB of RSS.
    import redis.asyncio as aioredis

Backend = Literal["memory", "redis"]


class StateNotShared(Exception):  # noqa: N818 - says what is wrong, like ConfigError
    """A command needs state other processes can see, and the settings give it memory."""


HOW_TO_SHARE = (
    "set TARA_REDIS_URL (state_backend 'auto' or 'redis') and the same TARA_REDIS_NAMESPACE "
    "for every gateway and the controller; to try rollouts in one process, run `tara demo`"
)
"""The remedy every refusal names."""


@dataclass(slots=True)
class _Leases:
    """How leader leases are made over one state, and whether one was made here."""

    board: MemoryLeaseBoard | None
    """The memory backend's board; ``None`` in Redis."""
    embedded: bool = False
    """A controller took a lease on this (memory) state: it runs in this process."""


@dataclass(slots=True)
class SharedState:
    """Every store the processes of one deployment share, opened together from settings.

    Call :meth:`aclose` (``async with contextlib.aclosing(state)``) to release
    the Redis client it opened. Stores with background loops of their own
    (the request index) are started and stopped by their user, the telemetry.
    """

    backend: Backend
    namespace: str
    routing: RoutingStore
    rollouts: RolloutStore
    windows: WindowStore
    requests: RequestIndex
    """The request index: which variant and window a request id belongs to, for feedback."""
    retries: RetryMemory
    """Recent questions per student, for user-retry detection."""
    runs: RunStore
    """The fine-tuning runs the controller drives (and operators approve or cancel)."""
    ledger: LedgerStore
    """When each segment's triggers last started a run, and the triggers' latest look."""
    redis: aioredis.Redis | None = None
    _leases: _Leases = field(default_factory=lambda: _Leases(None))
    _owns_redis: bool = False

    @property
    def shared(self) -> bool:
        """Whether other processes can see this state (Redis) or only this one (memory)."""
        return self.backend == "redis"

    @property
    def controller_embedded(self) -> bool:
        """Whether a controller in this process took a lease on this memory state."""
        return self._leases.embedded

    @property
    def judged(self) -> bool:
        """Whether a controller can see this state's rollouts: it is shared, or one is embedded."""
        return self.shared or self.controller_embedded

    def new_lease(self, ttl: float) -> Lease:
        """A leader lease for one controller over this state (marks memory state as embedded)."""
        if self.redis is not None:
            from tara.rollout.lease_redis import RedisLease

            return RedisLease(self.redis, self.namespace, ttl)
        board = self._leases.board
        assert board is not None
        self._leases.embedded = True
        return MemoryLease(ttl, board=board)

    async def leader_present(self) -> bool:
        """Whether some controller holds the leader lease of this state right now.

        Raises the store's error when Redis cannot be reached.
        """
        if self.redis is not None:
            owner = keys.key(self.namespace, keys.LEADER, OWNER_SUFFIX)
            return bool(await self.redis.exists(owner))
        board = self._leases.board
        return board is not None and board.owner is not None and board.expires_at > time.monotonic()

    def require_shared(self, command: str) -> None:
        """Raise :class:`StateNotShared` (naming ``command``) unless the state is shared."""
        if not self.shared:
            msg = (
                f"{command} cannot run on state in process memory: no other process would see "
                f"what it does. {HOW_TO_SHARE}"
            )
            raise StateNotShared(msg)

    async def aclose(self) -> None:
        """Close the Redis client if this state opened it."""
        if self.redis is not None and self._owns_redis:
            await self.redis.aclose()


def open_state(settings: Settings, *, redis: aioredis.Redis | None = None) -> SharedState:
    """Open the shared state the settings describe (see the module docstring).

    ``redis`` is a client to use instead of opening one from ``redis_url``
    (it stays open on :meth:`SharedState.aclose`; tests hand in a proxied
    one). Raises :class:`ValueError` when the settings ask for Redis without
    saying where it is.
    """
    if redis is not None:
        return _in_redis(settings, redis, owns_client=False)
    if not settings.use_redis:
        return _in_memory(settings)
    if settings.redis_url is None:
        msg = "state_backend is 'redis' but redis_url is not set (TARA_REDIS_URL)"
        raise ValueError(msg)
    import redis.asyncio as aioredis

    return _in_redis(settings, aioredis.Redis.from_url(settings.redis_url), owns_client=True)


def _in_memory(settings: Settings) -> SharedState:
    board = MemoryLeaseBoard()
    return SharedState(
        backend="memory",
        namespace=settings.redis_namespace,
        routing=MemoryRoutingStore(),
        rollouts=MemoryRolloutStore(leader_token=lambda: board.token),
        windows=MemoryWindowStore(settings.stats),
        requests=MemoryRequestIndex(settings.stats),
        retries=MemoryRetryMemory(
            settings.stats.user_retry_window_seconds, size=settings.stats.user_retry_memory_size
        ),
        runs=MemoryRunStore(leader_token=lambda: board.token),
        ledger=MemoryLedgerStore(leader_token=lambda: board.token),
        _leases=_Leases(board),
    )


def _in_redis(settings: Settings, client: aioredis.Redis, *, owns_client: bool) -> SharedState:
    from tara.retrain.stores_redis import RedisLedgerStore, RedisRunStore
    from tara.rollout.rollout_store_redis import RedisRolloutStore
    from tara.rollout.routing_store_redis import RedisRoutingStore
    from tara.telemetry.request_index_redis import RedisRequestIndex
    from tara.telemetry.user_retries import RedisRetryMemory
    from tara.telemetry.window_store_redis import RedisWindowStore

    ns, stats = settings.redis_namespace, settings.stats
    return SharedState(
        backend="redis",
        namespace=ns,
        routing=RedisRoutingStore(client, ns),
        rollouts=RedisRolloutStore(client, ns),
        windows=RedisWindowStore(client, namespace=ns, settings=stats),
        requests=RedisRequestIndex(client, namespace=ns, settings=stats),
        retries=RedisRetryMemory(client, namespace=ns, window=stats.user_retry_window_seconds),
        runs=RedisRunStore(client, ns),
        ledger=RedisLedgerStore(client, ns),
        redis=client,
        _owns_redis=owns_client,
    )
