"""What the demo records: numbers from window stats, whether a scenario ended well, the loop."""

from __future__ import annotations

import pytest

from tara.demo.timeline import (
    Marker,
    ScenarioResult,
    Timeline,
    describe_step,
    numbers_from,
    trigger_marker,
)
from tara.retrain.run import Run, RunState
from tara.rollout.routing import Segment
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats, latency_bucket


def test_numbers_from_window_stats() -> None:
    stats = WindowStats(requests=20, errors={"upstream": 2}, ratings=[0, 0, 1, 2, 1])
    bucket = latency_bucket(0.2)
    stats.latency[bucket] = 20
    n = numbers_from(stats)
    assert (n.requests, n.ratings, n.rating, n.error_rate) == (20, 4, 4.0, 0.1)
    assert n.p95 is not None
    assert LATENCY_BOUNDS[bucket - 1] < n.p95 <= LATENCY_BOUNDS[bucket]


def test_numbers_of_nothing_are_none_and_an_overflowing_p95_is_unknown() -> None:
    empty = numbers_from(WindowStats())
    assert (empty.rating, empty.error_rate, empty.p95) == (None, None, None)
    slow = WindowStats(requests=1)
    slow.latency[len(LATENCY_BOUNDS)] = 1
    assert numbers_from(slow).p95 is None


@pytest.mark.parametrize(
    ("expected", "phase", "error", "ok"),
    [
        ("rolled_back", "rolled_back", None, True),
        ("rolled_back", "succeeded", None, False),
        ("rolled_back", None, "starting the rollout failed", False),
        ("succeeded", "succeeded", None, True),
        ("succeeded", "aborted", "no verdict within 75s; aborted", False),
    ],
)
def test_a_scenario_is_ok_only_when_it_ended_as_expected(
    expected: str, phase: str | None, error: str | None, ok: bool
) -> None:
    result = ScenarioResult("s", "m", expected, "story", phase=phase, error=error)
    assert result.ok is ok
    assert Timeline(results=[result]).ok is ok
    assert result.to_dict()["ok"] is ok


def test_an_empty_run_is_not_ok() -> None:
    assert not Timeline().ok


def _run() -> Run:
    trigger = {
        "trigger": "low_rating",
        "value": 2.8421,
        "op": "<",
        "threshold": 3.5,
        "window_seconds": 10.0,
        "evidence": {"ratings": 228},
    }
    run = Run("ft-1", "tara-tutor", Segment("math", "hi"), 106.0, 0.0, 106.0, (trigger,))
    run = run.entered(RunState.PENDING, 106.0, "low_rating fired; 61 interactions rated ≥ 4")
    prepared = {"totals": {"read": 67, "kept": 62}, "examples": {"train": 40}}
    run = run.entered(RunState.PREPARED, 106.3, "dataset of math:hi written: train 40", prepared)
    run = run.entered(RunState.TRAINED, 109.0, "job j trained m", {"trained_tokens": 13197})
    checks = [
        {"name": "accuracy", "candidate": 0.917, "stable": 0.75},
        {"name": "cultural", "candidate": 0.9, "stable": 0.8},
        {"name": "error_rate", "candidate": 0.0, "stable": 0.0},
    ]
    return run.entered(RunState.EVALUATED, 110.5, "gate passed", {"checks": checks})


def test_the_trigger_marker_carries_the_rules_numbers() -> None:
    marker = trigger_marker(_run(), "full-loop", started=100.0)
    assert (marker.t, marker.decision, marker.weight) == (6.0, "trigger", 0.0)
    assert marker.reason == "low_rating on math:hi: 2.84 < 3.5 (ratings 228 in the last 10 s)"


def test_a_steps_description_adds_the_numbers_behind_it() -> None:
    pending, prepared, trained, evaluated = _run().steps
    assert describe_step(pending) == "low_rating fired; 61 interactions rated ≥ 4"
    assert describe_step(prepared).endswith("(read 67 interactions, kept 62)")
    assert describe_step(trained).endswith("(13,197 tokens trained)")
    assert describe_step(evaluated) == "gate passed (accuracy 0.917 vs 0.75; error_rate 0 vs 0)"


def test_events_merge_decisions_and_run_steps_in_time_order() -> None:
    result = ScenarioResult("full-loop", "m", "promoted", "story")
    result.markers = [Marker(5.0, "full-loop", "start", "run ft-1", "stage 1", 0.1)]
    result.steps = [
        Marker(1.0, "full-loop", "trigger", "controller", "", 0.0),
        Marker(5.2, "full-loop", "canary", "controller", "", 0.1),
    ]
    result.run = {"id": "ft-1"}
    result.served = {"math:hi": {"m": 3}}
    assert [e.decision for e in Timeline(results=[result]).events] == ["trigger", "start", "canary"]
    assert [m.decision for m in Timeline(results=[result]).markers] == ["start"]
    data = result.to_dict()
    assert data["run"] == {"id": "ft-1"}
    assert [s["decision"] for s in data["steps"]] == ["trigger", "canary"]
    assert data["served"] == {"math:hi": {"m": 3}}
    assert "run" not in ScenarioResult("x", "m", "succeeded", "").to_dict()
