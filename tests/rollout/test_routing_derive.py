"""routing_derive: what the routing table says about each rollout phase, and deriving it whole."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tara.rollout import model
from tara.rollout.bucketing import BUCKETS
from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.model import Phase, Rollout
from tara.rollout.plan import plan_from_settings
from tara.rollout.routing import CanaryRoute, RoutingTable, Segment, TrackRoute, route
from tara.rollout.routing_derive import apply_rollout, apply_to_track, derive

SETTINGS = RolloutSettings(
    stages=[StageSettings(percent=10, duration=1), StageSettings(percent=50, duration=1)]
)
PLAN = plan_from_settings(SETTINGS)
MATH = Segment("math")
TRACK = "tara-tutor"


def rollout(rid: str, segment: Segment = MATH, candidate: str = "ft-1", at: float = 0) -> Rollout:
    return Rollout(rid, TRACK, segment, "stable", candidate, f"salt-{rid}", PLAN, created_at=at)


def started(r: Rollout, at: float = 1) -> Rollout:
    return model.start(r, at)[0]


def succeeded(r: Rollout, at: float = 5) -> Rollout:
    """Start (if pending) and promote through both stages."""
    if r.phase is Phase.PENDING:
        r = started(r, at - 2)
    r = model.promote(r, at - 1)[0]
    return model.promote(r, at)[0]


def base() -> RoutingTable:
    return RoutingTable(4, {TRACK: TrackRoute("stable"), "other": TrackRoute("o")})


def routes(table: RoutingTable, track: str = TRACK) -> tuple[CanaryRoute, ...]:
    return table.tracks[track].canaries


def test_running_rollout_has_a_canary_route_at_its_stage_weight() -> None:
    r = started(rollout("a"))
    table = apply_rollout(base(), r)
    assert table.version == 4
    assert routes(table) == (CanaryRoute("a", MATH, "ft-1", "salt-a", 1000),)
    assert table.tracks["other"] == base().tracks["other"]
    r2 = model.promote(r, 2)[0]
    assert routes(apply_rollout(table, r2))[0].weight_bp == 5000
    paused = model.pause(r2, 3)[0]
    assert routes(apply_rollout(table, paused))[0].weight_bp == 5000  # paused keeps its weight


def test_updating_a_route_keeps_its_place() -> None:
    a, b = started(rollout("a")), started(rollout("b", Segment("physics")))
    table = apply_rollout(apply_rollout(base(), a), b)
    table = apply_rollout(table, model.promote(a, 2)[0])
    assert [(c.rollout_id, c.weight_bp) for c in routes(table)] == [("a", 5000), ("b", 1000)]


@pytest.mark.parametrize(
    "finish",
    [
        lambda r: model.rollback(r, 2)[0],
        lambda r: model.abort(r, 2)[0],
    ],
)
def test_rolled_back_or_aborted_rollout_has_no_route(finish: object) -> None:
    r = started(rollout("a"))
    table = apply_rollout(base(), r)
    done = finish(r)  # type: ignore[operator]
    assert routes(apply_rollout(table, done)) == ()
    got = route(apply_rollout(table, done), TRACK, "s1", "math", "hi")
    assert got is not None
    assert (got.variant, got.model) == ("stable", "stable")


def test_pending_rollout_has_no_route_and_unchanged_table_is_returned_as_is() -> None:
    table = base()
    assert apply_rollout(table, rollout("a")) is table


def test_whole_track_success_makes_the_candidate_the_track_stable() -> None:
    pinned = apply_rollout(base(), succeeded(rollout("p", MATH, "ft-math")))
    r = succeeded(rollout("a", Segment(), "ft-all"), at=10)
    table = apply_rollout(pinned, r)
    assert table.tracks[TRACK] == TrackRoute("ft-all")  # its route and older pins are gone
    got = route(table, TRACK, "s1", "math", None)
    assert got is not None
    assert (got.variant, got.model) == ("stable", "ft-all")


def test_segment_success_pins_the_segment_and_supersedes_pins_inside_it() -> None:
    table = base()
    for r in (
        succeeded(rollout("p1", Segment("math", "hi"), "ft-m-hi"), 5),
        succeeded(rollout("p2", Segment("physics"), "ft-phys"), 6),
    ):
        table = apply_rollout(table, r)
    assert [c.rollout_id for c in routes(table)] == ["p2", "p1"]  # newest pin first
    r = started(rollout("a", MATH, "ft-math"), 7)
    table = apply_rollout(table, r)
    assert routes(table)[-1] == CanaryRoute("a", MATH, "ft-math", "salt-a", 1000)
    table = apply_rollout(table, succeeded(r, 9))
    assert routes(table) == (
        CanaryRoute("a", MATH, "ft-math", "salt-a", 0, stable_model="ft-math"),
        CanaryRoute("p2", Segment("physics"), "ft-phys", "salt-p2", 0, stable_model="ft-phys"),
    )
    assert table.tracks[TRACK].stable_model == "stable"
    for subject, language, model_ in [("math", "hi", "ft-math"), ("physics", "ta", "ft-phys")]:
        got = route(table, TRACK, "s1", subject, language)
        assert got is not None
        assert (got.variant, got.model) == ("stable", model_)


def test_weight_of_a_succeeded_rollout_is_full_but_it_routes_as_stable() -> None:
    r = succeeded(rollout("a"))
    assert r.weight_bp == BUCKETS
    assert routes(apply_rollout(base(), r))[0].weight_bp == 0


def test_a_rollout_on_a_track_missing_from_the_table_adds_it() -> None:
    r = started(rollout("a"))
    table = apply_rollout(RoutingTable(), r)
    assert table.tracks[TRACK].stable_model == "stable"


# -- derive ----------------------------------------------------------------


def history() -> list[list[Rollout]]:
    """Snapshots of the records as a few rollouts progress (each list: all records then)."""
    a = rollout("a", MATH, "ft-a", at=0)
    b = rollout("b", Segment(None, "ta"), "ft-b", at=1)
    c = rollout("c", Segment(), "ft-c", at=2)
    steps: list[dict[str, Rollout]] = []
    records: dict[str, Rollout] = {}

    def put(r: Rollout) -> None:
        records[r.id] = r
        steps.append(dict(records))

    put(a)
    put(a := started(a, 1))
    put(b := started(b, 2))
    put(a := model.promote(a, 3)[0])
    put(b := model.rollback(b, 4)[0])
    put(a := model.promote(a, 5)[0])  # a succeeds: math pinned to ft-a
    put(c := started(c, 6))
    put(c := model.pause(c, 7)[0])
    put(c := model.resume(c, 8)[0])
    put(succeeded(c, 12))  # c succeeds: ft-c is the track's stable, the pin goes
    return [list(s.values()) for s in steps]


def test_derive_equals_applying_each_change_as_it_happened() -> None:
    table = base()
    for records in history():
        latest = max(records, key=lambda r: r.updated_at)
        table = apply_rollout(table, latest)
        assert derive(base(), records, {}) == table
        assert derive(table, records, {}) == table  # idempotent


def test_derive_repairs_a_table_that_missed_writes() -> None:
    records = history()[6]  # a succeeded, c running
    stale = RoutingTable(9, {TRACK: TrackRoute("stable", (CanaryRoute("a", MATH, "x", "s", 7),))})
    fixed = derive(stale, records, {})
    assert fixed.version == 9
    assert [(c.rollout_id, c.pinned) for c in routes(fixed)] == [("a", True), ("c", False)]


def test_derive_keeps_routes_of_unknown_rollouts_and_leaves_untouched_tracks_alone() -> None:
    foreign = CanaryRoute("elsewhere", Segment("chemistry"), "x", "s", 500)
    table = RoutingTable(1, {TRACK: TrackRoute("stable", (foreign,))})
    derived = derive(table, [rollout("a"), started(rollout("b"))], {"quiz": "q", TRACK: "cfg"})
    assert routes(derived)[0] == foreign
    assert "quiz" not in derived.tracks
    assert derive(RoutingTable(), [model.rollback(started(rollout("a")), 2)[0]], {}).tracks == {}


def test_derive_adds_a_missing_track_from_the_configured_stable_model() -> None:
    derived = derive(RoutingTable(), [started(rollout("a"))], {TRACK: "cfg-stable"})
    assert derived.tracks[TRACK].stable_model == "cfg-stable"


def test_derive_replays_successes_in_order() -> None:
    first = succeeded(rollout("a", Segment(), "ft-a"), at=5)
    second = succeeded(rollout("b", Segment(), "ft-b"), at=9)
    for records in ([first, second], [second, first]):
        assert derive(base(), records, {}).tracks[TRACK].stable_model == "ft-b"


def test_apply_to_track_does_not_touch_other_rollouts_routes() -> None:
    other = CanaryRoute("z", Segment("chemistry"), "x", "s", 500)
    r = replace(started(rollout("a")), phase=Phase.ABORTED)
    assert apply_to_track(TrackRoute("stable", (other,)), r) == TrackRoute("stable", (other,))
