"""The routing table and ``route()``: table tests, plus round trips of its text forms."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tara.rollout.bucketing import BUCKETS, in_canary
from tara.rollout.routing import (
    CanaryRoute,
    Route,
    RoutingTable,
    Segment,
    TrackRoute,
    route,
)

MATH_HI = Segment("math", "hi")
TAMIL = Segment(None, "ta")
PHYSICS = Segment("physics")


def canary(segment: Segment, weight_bp: int, rollout_id: str = "r1") -> CanaryRoute:
    return CanaryRoute(rollout_id, segment, f"ft-{rollout_id}", f"salt-{rollout_id}", weight_bp)


TABLE = RoutingTable(
    version=7,
    tracks={
        "tara-tutor": TrackRoute(
            "tara-stable",
            (canary(MATH_HI, BUCKETS, "r-math"), canary(TAMIL, 0, "r-ta")),
        ),
        "tara-quiz": TrackRoute("quiz-stable"),
        "tara-lab": TrackRoute("lab-stable", (canary(Segment(), BUCKETS, "r-all"),)),
    },
)


@pytest.mark.parametrize(
    ("track", "student", "subject", "language", "expected"),
    [
        # segment matches, full weight: canary
        ("tara-tutor", "s1", "math", "hi", Route("canary", "ft-r-math", "math:hi", "r-math")),
        # no student id: stable, but the segment (and rollout) are kept for comparable stats
        ("tara-tutor", None, "math", "hi", Route("stable", "tara-stable", "math:hi", "r-math")),
        ("tara-tutor", "", "math", "hi", Route("stable", "tara-stable", "math:hi", "r-math")),
        # a second, disjoint segment on the same track, weight 0: stable in that segment
        ("tara-tutor", "s1", "math", "ta", Route("stable", "tara-stable", "*:ta", "r-ta")),
        ("tara-tutor", "s1", "physics", "ta", Route("stable", "tara-stable", "*:ta", "r-ta")),
        # outside every segment: stable, segment "all", no rollout
        ("tara-tutor", "s1", "math", "en", Route("stable", "tara-stable", "all", None)),
        ("tara-tutor", "s1", None, None, Route("stable", "tara-stable", "all", None)),
        ("tara-quiz", "s1", "math", "hi", Route("stable", "quiz-stable", "all", None)),
        # a whole-track canary matches requests without any context
        ("tara-lab", "s1", None, None, Route("canary", "ft-r-all", "all", "r-all")),
    ],
)
def test_route(
    track: str, student: str | None, subject: str | None, language: str | None, expected: Route
) -> None:
    assert route(TABLE, track, student, subject, language) == expected


def test_unknown_track_is_none() -> None:
    assert route(TABLE, "gpt-4", "s1", "math", "hi") is None
    assert route(RoutingTable(), "tara-tutor", "s1", None, None) is None


def test_partial_weight_follows_the_sticky_bucket() -> None:
    c = canary(PHYSICS, 3000)
    table = RoutingTable(1, {"t": TrackRoute("stable", (c,))})
    variants = {s: route(table, "t", s, "physics", "en") for s in (f"s{i}" for i in range(500))}
    for student, got in variants.items():
        assert got is not None
        assert (got.variant == "canary") is in_canary(c.salt, student, 3000)
        assert got.model == ("ft-r1" if got.variant == "canary" else "stable")
        assert got.segment == "physics:*"
    assert 100 < sum(r is not None and r.variant == "canary" for r in variants.values()) < 200


def test_disjoint_segments_on_one_track_each_route_their_own_canary() -> None:
    tr = TrackRoute(
        "stable",
        (
            canary(Segment("math", "hi"), BUCKETS, "a"),
            canary(Segment("math", "ta"), BUCKETS, "b"),
            canary(Segment("physics", None), BUCKETS, "c"),
        ),
    )
    assert not any(
        x.segment.overlaps(y.segment)
        for i, x in enumerate(tr.canaries)
        for y in tr.canaries[i + 1 :]
    )
    table = RoutingTable(1, {"t": tr})
    got = {
        ctx: route(table, "t", "s1", *ctx)
        for ctx in [("math", "hi"), ("math", "ta"), ("physics", "en"), ("chemistry", "hi")]
    }
    assert {ctx: (r.model, r.segment) for ctx, r in got.items() if r is not None} == {
        ("math", "hi"): ("ft-a", "math:hi"),
        ("math", "ta"): ("ft-b", "math:ta"),
        ("physics", "en"): ("ft-c", "physics:*"),
        ("chemistry", "hi"): ("stable", "all"),
    }


@pytest.mark.parametrize(
    ("segment", "subject", "language", "matches"),
    [
        (Segment(), None, None, True),
        (Segment(), "math", "hi", True),
        (Segment("math"), "math", "ta", True),
        (Segment("math"), "physics", "ta", False),
        (Segment("math"), None, "ta", False),
        (Segment(None, "hi"), "physics", "hi", True),
        (Segment(None, "hi"), "physics", None, False),
        (Segment("math", "hi"), "math", "hi", True),
        (Segment("math", "hi"), "math", "en", False),
    ],
)
def test_segment_matches(
    segment: Segment, subject: str | None, language: str | None, matches: bool
) -> None:
    assert segment.matches(subject, language) is matches


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        (Segment(), Segment("math", "hi"), True),
        (Segment("math"), Segment(None, "hi"), True),  # math in Hindi is in both
        (Segment("math"), Segment("physics"), False),
        (Segment("math", "hi"), Segment("math", "ta"), False),
        (Segment(None, "hi"), Segment(None, "ta"), False),
        (Segment("math", "hi"), Segment("math", "hi"), True),
    ],
)
def test_segment_overlaps_is_symmetric(a: Segment, b: Segment, overlap: bool) -> None:
    assert a.overlaps(b) is overlap
    assert b.overlaps(a) is overlap


@pytest.mark.parametrize(
    ("segment", "label"),
    [
        (Segment(), "all"),
        (Segment("math"), "math:*"),
        (Segment(None, "ta"), "*:ta"),
        (Segment("math", "hi"), "math:hi"),
        (Segment("all"), "all:*"),  # a subject called "all" is not the whole track
    ],
)
def test_segment_label_and_parse(segment: Segment, label: str) -> None:
    assert segment.label == label
    assert Segment.parse(label) == segment


names = st.text(min_size=1, max_size=12).filter(lambda s: s != "*" and ":" not in s)


@given(subject=st.none() | names, language=st.none() | names)
def test_segment_label_round_trips(subject: str | None, language: str | None) -> None:
    segment = Segment(subject, language)
    assert Segment.parse(segment.label) == segment


@pytest.mark.parametrize("bad", ["", "*", "math:hi", 3])
def test_segment_rejects_values_its_label_cannot_carry(bad: Any) -> None:
    with pytest.raises(ValueError, match="segment"):
        Segment(bad)
    with pytest.raises(ValueError, match="segment"):
        Segment(None, bad)


@pytest.mark.parametrize("weight", [-1, BUCKETS + 1])
def test_canary_weight_must_be_in_range(weight: int) -> None:
    with pytest.raises(ValueError, match="weight_bp"):
        canary(Segment(), weight)


def test_to_dict_from_dict_round_trip() -> None:
    data = TABLE.to_dict()
    assert data["version"] == 7
    assert data["tracks"]["tara-tutor"]["canaries"][1] == {
        "rollout_id": "r-ta",
        "subject": None,
        "language": "ta",
        "model": "ft-r-ta",
        "salt": "salt-r-ta",
        "weight_bp": 0,
    }
    assert RoutingTable.from_dict(data) == TABLE
    assert RoutingTable.from_dict(RoutingTable().to_dict()) == RoutingTable()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 1},
        {"version": "x", "tracks": {}},
        {"version": 1, "tracks": {"t": {}}},
        {"version": 1, "tracks": {"t": {"stable_model": "m", "canaries": [{"model": "x"}]}}},
        {
            "version": 1,
            "tracks": {
                "t": {
                    "stable_model": "m",
                    "canaries": [
                        {"rollout_id": "r", "model": "x", "salt": "s", "weight_bp": 10_001}
                    ],
                }
            },
        },
    ],
)
def test_from_dict_rejects_malformed_tables(data: dict[str, Any]) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        RoutingTable.from_dict(data)


def test_with_defaults_adds_missing_tracks_and_keeps_stored_ones() -> None:
    merged = TABLE.with_defaults({"tara-tutor": "configured", "tara-new": "new-stable"})
    assert merged.version == TABLE.version
    assert merged.tracks["tara-tutor"] == TABLE.tracks["tara-tutor"]
    assert merged.tracks["tara-new"] == TrackRoute("new-stable")
    assert TABLE.with_defaults({"tara-quiz": "other"}) is TABLE


# -- pins: a segment whose own rollout succeeded keeps its own stable model --------


def pin(segment: Segment, model: str, rollout_id: str = "p1") -> CanaryRoute:
    return CanaryRoute(rollout_id, segment, model, f"salt-{rollout_id}", 0, stable_model=model)


PINNED = RoutingTable(
    3,
    {
        "t": TrackRoute(
            "stable",
            (
                pin(Segment("math"), "ft-math"),
                canary(Segment(None, "hi"), BUCKETS, "r-hi"),
                pin(Segment(None, "ta"), "ft-ta", "p2"),
                pin(Segment(), "never", "p3"),  # a later pin that an earlier one shadows
            ),
        )
    },
)


@pytest.mark.parametrize(
    ("student", "subject", "language", "expected"),
    [
        # pinned segment, no running canary: its own stable, no rollout
        ("s1", "math", "en", Route("stable", "ft-math", "math:*", None)),
        ("s1", "physics", "ta", Route("stable", "ft-ta", "*:ta", None)),
        # a running canary over a pinned segment: canary students see the canary ...
        ("s1", "math", "hi", Route("canary", "ft-r-hi", "*:hi", "r-hi")),
        # ... everyone else the pinned stable, under the canary's segment for comparable stats
        (None, "math", "hi", Route("stable", "ft-math", "*:hi", "r-hi")),
        (None, "physics", "hi", Route("stable", "never", "*:hi", "r-hi")),
        ("s1", None, None, Route("stable", "never", "all", None)),
    ],
)
def test_route_with_pins(
    student: str | None, subject: str | None, language: str | None, expected: Route
) -> None:
    assert route(PINNED, "t", student, subject, language) == expected


def test_pin_must_have_weight_zero() -> None:
    with pytest.raises(ValueError, match="weight 0"):
        CanaryRoute("p", Segment("math"), "m", "s", 10, stable_model="m")
    assert pin(Segment("math"), "m").pinned
    assert not canary(Segment("math"), 10).pinned


def test_pins_round_trip_and_plain_routes_keep_their_old_form() -> None:
    data = PINNED.to_dict()
    routes = data["tracks"]["t"]["canaries"]
    assert routes[0]["stable_model"] == "ft-math"
    assert "stable_model" not in routes[1]
    assert RoutingTable.from_dict(data) == PINNED
