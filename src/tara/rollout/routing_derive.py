"""What the routing table should say about rollouts: pure functions, no I/O.

:func:`apply_rollout` puts one rollout's state into a table: a running
(progressing or paused) rollout has a canary route at its stage weight; a
rolled-back, aborted or pending one has none; a succeeded one has made its
candidate stable — the track's stable model for a whole-track rollout, a
pin (:attr:`CanaryRoute.stable_model`) for a segment-scoped one. Either way
a success supersedes the older pins inside its segment.

:func:`derive` rebuilds every rollout's routes from the records alone, so a
crash between saving a rollout and saving the table is repaired by the next
sync. Routes of rollouts the records do not know are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tara.rollout.model import RUNNING, Phase, Rollout
from tara.rollout.routing import CanaryRoute, RoutingTable, TrackRoute


def _canary_route(rollout: Rollout) -> CanaryRoute:
    return CanaryRoute(
        rollout.id, rollout.segment, rollout.candidate_model, rollout.salt, rollout.weight_bp
    )


def _pin(rollout: Rollout) -> CanaryRoute:
    model = rollout.candidate_model
    return CanaryRoute(rollout.id, rollout.segment, model, rollout.salt, 0, stable_model=model)


def apply_to_track(track: TrackRoute, rollout: Rollout) -> TrackRoute:
    """``track`` with ``rollout``'s route set, removed or promoted per its phase."""
    if rollout.phase in RUNNING:
        route = _canary_route(rollout)
        ids = [c.rollout_id for c in track.canaries]
        if rollout.id in ids:  # keep its place: the order decides overlapping matches
            canaries = tuple(route if c.rollout_id == rollout.id else c for c in track.canaries)
        else:
            canaries = (*track.canaries, route)
        return TrackRoute(track.stable_model, canaries)
    others = tuple(c for c in track.canaries if c.rollout_id != rollout.id)
    if rollout.phase is not Phase.SUCCEEDED:
        return TrackRoute(track.stable_model, others)
    segment = rollout.segment
    kept = tuple(c for c in others if not (c.pinned and segment.contains(c.segment)))
    if segment.subject is None and segment.language is None:
        return TrackRoute(rollout.candidate_model, kept)
    # Newest pin first: where pins overlap, the latest success decides.
    return TrackRoute(track.stable_model, (_pin(rollout), *kept))


def apply_rollout(table: RoutingTable, rollout: Rollout) -> RoutingTable:
    """``table`` (same version) with ``rollout``'s routes brought up to date."""
    track = table.tracks.get(rollout.track) or TrackRoute(rollout.stable_model)
    updated = apply_to_track(track, rollout)
    if table.tracks.get(rollout.track) == updated:
        return table
    return RoutingTable(table.version, {**table.tracks, rollout.track: updated})


def _replay_order(rollout: Rollout) -> tuple[bool, float, float, str]:
    """Finished rollouts in the order they finished, so the latest success wins;
    then the running ones in the order they were created (their routes' order)."""
    if rollout.phase in RUNNING:
        return (True, rollout.created_at, 0.0, rollout.id)
    return (False, rollout.updated_at, rollout.created_at, rollout.id)


def derive(
    table: RoutingTable, rollouts: Iterable[Rollout], stable_models: Mapping[str, str]
) -> RoutingTable:
    """The table (same version) that ``rollouts`` imply, starting from ``table``.

    Every route of a known rollout is dropped and rebuilt by replaying the
    records (see :func:`_replay_order`). A track missing from ``table``
    is added only when a rollout needs it, starting from its configured
    stable model (so untouched tracks keep following the configuration).
    """
    records = sorted(rollouts, key=_replay_order)
    known = {r.id for r in records}
    tracks = {
        name: TrackRoute(
            tr.stable_model, tuple(c for c in tr.canaries if c.rollout_id not in known)
        )
        for name, tr in table.tracks.items()
    }
    for rollout in records:
        track = tracks.get(rollout.track)
        if track is None:
            track = TrackRoute(stable_models.get(rollout.track, rollout.stable_model))
            if rollout.phase not in RUNNING and rollout.phase is not Phase.SUCCEEDED:
                continue  # nothing to route: leave the track to the configuration
        tracks[rollout.track] = apply_to_track(track, rollout)
    return RoutingTable(table.version, tracks)
