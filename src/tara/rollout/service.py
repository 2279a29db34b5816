"""The rollout service: every change to a rollout goes through here, then the routing table.

Operators (admin API, ``tara rollout``) call :meth:`RolloutService.start`,
``promote``, ``pause``, ``resume``, ``rollback`` and ``abort``; the
controller calls :meth:`RolloutService.apply` with the result of
:func:`tara.rollout.decide.step`. Each change is saved with check-and-set on
the rollout record first, then the routing table is re-derived from all
records (:func:`tara.rollout.routing_derive.derive`) and saved with
check-and-set, retrying on conflict. Because the table is derived, a crash
between the two writes is repaired by the next :meth:`sync_routing`. An
operator's transition is saved with its notices in the rollout's outbox; the
leading controller carries them out (metrics, webhooks).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

from tara.rollout import model
from tara.rollout.actions import Action, PromoteToStable, Rollback, SetWeight
from tara.rollout.bucketing import new_salt
from tara.rollout.config import RolloutSettings
from tara.rollout.model import TERMINAL, Phase, Rollout, Transition, TransitionError
from tara.rollout.plan import plan_from_settings
from tara.rollout.rollout_store import RolloutStore, StaleLeaderError
from tara.rollout.routing import RoutingTable, Segment, TrackRoute
from tara.rollout.routing_derive import derive
from tara.rollout.routing_store import RoutingStore, RoutingStoreError

if TYPE_CHECKING:
    from tara.settings import Settings
    from tara.state import SharedState

log = logging.getLogger(__name__)

__all__ = [
    "RolloutConflict",
    "RolloutNotFound",
    "RolloutService",
    "TransitionError",
    "UnknownTrack",
]

_ROUTING_ACTIONS = (SetWeight, PromoteToStable, Rollback)
_MAX_ATTEMPTS = 20


class RolloutNotFound(Exception):  # noqa: N818 - the agreed public name
    """No rollout has this id."""


class UnknownTrack(Exception):  # noqa: N818 - the agreed public name
    """The track is neither configured nor in the routing table."""


class RolloutConflict(Exception):  # noqa: N818 - the agreed public name
    """The request collides with another rollout (overlapping segment) or kept losing races."""


Operation = Callable[[Rollout, float], Transition]


def _canonical(rollout: Rollout) -> bytes:
    return orjson.dumps(rollout.to_dict(), option=orjson.OPT_SORT_KEYS)


def _segment_stable(track: TrackRoute, segment: Segment) -> str:
    """The model a segment's students get now: its pin's, else the track's stable model."""
    for c in track.canaries:
        if c.stable_model is not None and c.segment == segment:
            return c.stable_model
    return track.stable_model


class RolloutService:
    """Rollout records and the routing table, kept consistent."""

    def __init__(
        self,
        rollouts: RolloutStore,
        routing: RoutingStore,
        settings: RolloutSettings,
        stable_models: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rollouts = rollouts
        self.routing = routing
        self.settings = settings
        self.stable_models = dict(stable_models)
        self._clock = clock

    @classmethod
    def over(cls, state: SharedState, settings: Settings) -> RolloutService:
        """The service over ``state``'s rollout records and routing table."""
        stables = {name: track.stable_model for name, track in settings.tracks.items()}
        return cls(state.rollouts, state.routing, settings.rollout, stables)

    async def list(self, track: str | None = None, *, active_only: bool = False) -> list[Rollout]:
        """Rollouts oldest first, optionally of one track and only those not finished."""
        return [
            r
            for r in await self.rollouts.list()
            if (track is None or r.track == track) and not (active_only and r.phase in TERMINAL)
        ]

    async def get(self, rollout_id: str) -> Rollout:
        """The rollout; :class:`RolloutNotFound` if there is none."""
        rollout = await self.rollouts.get(rollout_id)
        if rollout is None:
            raise RolloutNotFound(f"no rollout with id {rollout_id!r}")
        return rollout

    async def start(
        self,
        track: str,
        candidate_model: str,
        *,
        subject: str | None = None,
        language: str | None = None,
        actor: str = "operator",
    ) -> Rollout:
        """Create a rollout of ``candidate_model`` on the track's segment and begin stage 1.

        Raises :class:`UnknownTrack`, :class:`ValueError` (bad candidate or
        segment) or :class:`RolloutConflict` (a running rollout's segment overlaps).
        """
        segment = Segment(subject, language)
        candidate = candidate_model.strip()
        if not candidate:
            msg = "candidate model must be a non-empty name"
            raise ValueError(msg)
        stable = await self.stable_model(track, segment)
        if candidate == stable:
            msg = f"{candidate!r} is already the stable model of {track} segment {segment.label}"
            raise ValueError(msg)
        await self._refuse_overlap(track, segment, None)
        now = self._clock()
        rollout = Rollout(
            id=f"ro-{secrets.token_hex(6)}",
            track=track,
            segment=segment,
            stable_model=stable,
            candidate_model=candidate,
            salt=new_salt(),
            plan=plan_from_settings(self.settings),
            created_at=now,
            updated_at=now,
        )
        if not await self.rollouts.save(rollout, 0):
            msg = f"rollout id {rollout.id} is taken; try again"
            raise RolloutConflict(msg)
        # Two concurrent starts can both pass the first check, so check again now that
        # ours is saved (pending): it yields to a rival that got past pending or is older.
        # Records are CAS'd one at a time, so one window stays: an older start whose
        # save lands after our re-check yet before we leave pending. It needs two
        # operators racing on one track within milliseconds; the admin API is the guard.
        try:
            await self._refuse_overlap(track, segment, rollout)
        except RolloutConflict:
            await self._transition(rollout.id, _op(model.abort, actor, "overlapping start"))
            raise
        try:
            return await self._transition(
                rollout.id, lambda r, now: model.start(r, now, actor=actor)
            )
        except TransitionError:  # the controller started it first
            return await self.get(rollout.id)

    async def current_stable_models(self) -> dict[str, str]:
        """Each track's stable model now: the routing table's (a promotion changes it), else
        the configured one."""
        table = await self.routing.load_table()
        routes = table.tracks if table is not None else {}
        return self.stable_models | {name: route.stable_model for name, route in routes.items()}

    async def stable_model(self, track: str, segment: Segment) -> str:
        """The model the segment's students get now (its pin's, else the track's stable).

        Raises :class:`UnknownTrack`.
        """
        table = (await self.routing.load_table() or RoutingTable()).with_defaults(
            self.stable_models
        )
        route = table.tracks.get(track)
        if route is None:
            known = ", ".join(sorted(table.tracks)) or "none"
            raise UnknownTrack(f"unknown track {track!r} (known: {known})")
        return _segment_stable(route, segment)

    async def _refuse_overlap(self, track: str, segment: Segment, mine: Rollout | None) -> None:
        """Raise :class:`RolloutConflict` if a running rollout's segment overlaps ``segment``.

        For ``mine`` (already saved as pending) a pending rival counts only if
        it is older, so of two racing starts the younger yields; one that got
        past pending always counts, whoever is older.
        """
        for other in await self.list(track, active_only=True):
            if mine is not None and (
                other.id == mine.id
                or (
                    other.phase is Phase.PENDING
                    and (other.created_at, other.id) > (mine.created_at, mine.id)
                )
            ):
                continue
            if other.segment.overlaps(segment):
                msg = (
                    f"track {track} already has rollout {other.id} ({other.phase.value}) on "
                    f"segment {other.segment.label}, which overlaps {segment.label}; finish, "
                    "roll back or abort it first"
                )
                raise RolloutConflict(msg)

    async def promote(
        self, rollout_id: str, *, actor: str = "operator", reason: str = ""
    ) -> Rollout:
        """Move to the next stage now (after the last one the canary becomes stable)."""
        return await self._transition(rollout_id, _op(model.promote, actor, reason))

    async def pause(self, rollout_id: str, *, actor: str = "operator", reason: str = "") -> Rollout:
        """Stop advancing; the canary keeps its weight and is still watched."""
        return await self._transition(rollout_id, _op(model.pause, actor, reason))

    async def resume(
        self, rollout_id: str, *, actor: str = "operator", reason: str = ""
    ) -> Rollout:
        """Continue a paused rollout with the stage time it had left."""
        return await self._transition(rollout_id, _op(model.resume, actor, reason))

    async def rollback(
        self, rollout_id: str, *, actor: str = "operator", reason: str = ""
    ) -> Rollout:
        """Send the segment's students back to stable and end the rollout."""
        return await self._transition(rollout_id, _op(model.rollback, actor, reason))

    async def abort(self, rollout_id: str, *, actor: str = "operator", reason: str = "") -> Rollout:
        """End the rollout without a verdict; the canary gets no traffic."""
        return await self._transition(rollout_id, _op(model.abort, actor, reason))

    async def _transition(self, rollout_id: str, operation: Operation) -> Rollout:
        """Load, transition, check-and-set (reloading on a lost race), sync the routing table.

        The transition's notices go to the rollout's outbox, for the controller.
        """
        for _ in range(_MAX_ATTEMPTS):
            stored = await self.rollouts.load(rollout_id)
            if stored is None:
                raise RolloutNotFound(f"no rollout with id {rollout_id!r}")
            new, actions = operation(stored.rollout, self._clock())
            new = new.with_notices(actions)
            if await self.rollouts.save(new, stored.revision):
                await self._after(new, actions)
                return new
        msg = f"rollout {rollout_id} kept changing while it was being updated; try again"
        raise RolloutConflict(msg)

    async def apply(
        self,
        before: Rollout,
        after: Rollout,
        actions: Sequence[Action],
        *,
        fence: int | None = None,
    ) -> Rollout | None:
        """Persist the controller's decision ``before → after`` and sync the routing table.

        Returns ``after``, or ``None`` when the stored rollout is no longer
        ``before`` (an operator or another controller got there first) or
        ``fence`` is stale (the controller then finds its lease gone and says
        so). The caller carries out the other ``actions`` itself (this method
        only syncs the routing table for them).
        """
        stored = await self.rollouts.load(before.id)
        if stored is None or _canonical(stored.rollout) != _canonical(before):
            return None
        try:
            saved = await self.rollouts.save(after, stored.revision, fence)
        except StaleLeaderError as exc:
            log.warning("rollout %s not saved: %s", after.id, exc)
            return None
        if not saved:
            return None
        await self._after(after, actions)
        return after

    async def _after(self, rollout: Rollout, actions: Sequence[Action]) -> None:
        if not any(isinstance(a, _ROUTING_ACTIONS) for a in actions):
            return
        try:
            await self.sync_routing()
        except RoutingStoreError as exc:
            # The record is saved; the next sync derives the same table.
            log.warning("rollout %s saved but the routing table is not yet: %s", rollout.id, exc)

    async def sync_routing(self) -> None:
        """Make the stored routing table what the rollout records imply.

        Writes only when something differs, with check-and-set, re-deriving
        after a lost race. Raises :class:`RoutingStoreError` if the store fails.
        """
        for _ in range(_MAX_ATTEMPTS):
            table = await self.routing.load_table() or RoutingTable()
            wanted = derive(table, await self.rollouts.list(), self.stable_models)
            if dict(wanted.tracks) == dict(table.tracks):
                return
            new = RoutingTable(table.version + 1, wanted.tracks)
            if await self.routing.save_table(new, table.version):
                return
        msg = "the routing table kept changing while it was being synced"
        raise RoutingStoreError(msg)

    def now(self) -> float:
        """The service's clock (epoch seconds, or a test's virtual time)."""
        return self._clock()


def _op(
    transition: Callable[[Rollout, float, str, str], Transition], actor: str, reason: str
) -> Operation:
    return lambda rollout, now: transition(rollout, now, actor, reason)
