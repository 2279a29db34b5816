"""What the demo records: numbers from window stats, and whether a scenario ended well."""

from __future__ import annotations

import pytest

from tara.demo.timeline import ScenarioResult, Timeline, numbers_from
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
