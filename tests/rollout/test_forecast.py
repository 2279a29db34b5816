"""``tara simulate plan``: stage times from traffic, and the smallest effects caught."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tara.cli import build_parser
from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.forecast import (
    forecast,
    format_forecast,
    plan_command,
    plan_traffic,
    smallest_caught,
    stage_floor_seconds,
)
from tara.rollout.scenarios import Traffic
from tara.settings import Settings

SHORT = RolloutSettings(
    stages=[
        StageSettings(percent=10, duration=timedelta(hours=6), min_requests=200, min_ratings=40,
                      intensive=True, fail_confidence=0.8),
        StageSettings(percent=50, duration=timedelta(hours=3), min_requests=300, min_ratings=60),
    ],
    interval=timedelta(minutes=30),
    intensive_interval=timedelta(minutes=10),
)  # fmt: skip


@pytest.mark.parametrize(
    ("requests_per_hour", "hours"),
    [(1200, [6.0, 3.0]), (100, [20.0, 6.0]), (20, [100.0, 30.0])],
)
def test_a_stage_lasts_as_long_as_its_minimum_time_requests_and_ratings_need(
    requests_per_hour: float, hours: list[float]
) -> None:
    floors = stage_floor_seconds(SHORT, Traffic(requests_per_hour=requests_per_hour))
    assert [round(s / 3600, 1) for s in floors] == hours


@pytest.mark.parametrize(
    ("caught", "expected"),
    [([0.1, 0.5, 0.95, 1.0], 3.0), ([0.1, 0.5, 0.9, 1.0], 3.5), ([0.96, 1, 1, 1], 1.0),
     ([0.1, 0.2, 0.3, 0.4], None)],
)  # fmt: skip
def test_smallest_caught_interpolates_where_the_rate_crosses_95(
    caught: list[float], expected: float | None
) -> None:
    assert smallest_caught((1.0, 2.0, 3.0, 4.0), caught) == pytest.approx(expected)


def test_the_forecast_names_stage_times_and_the_smallest_effects_caught() -> None:
    result = forecast(SHORT, Traffic(requests_per_hour=1200), runs=40, seed=1)
    first, second = result["stages"]
    assert (first["expected_hours"], second["expected_hours"]) == (6.0, 3.0)
    caught = first["smallest_caught"]
    assert 0.05 < caught["error_rate"] < 0.2
    assert 0.3 < caught["rating_drop"] < 1.5
    assert 2.0 < caught["slowdown"] < 4.0
    assert second["smallest_caught"]["error_rate"] <= caught["error_rate"]
    text = format_forecast(result)
    assert "stage  weight  min time  expected time" in text
    assert "to 100%: 0.4 days" in text


def test_plan_options_become_traffic_and_bad_ones_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(
        ["simulate", "plan", "--requests-per-hour", "100", "--ratings-per-hour", "33"]
    )
    traffic = plan_traffic(args)
    assert traffic.requests_per_hour == 100
    assert traffic.stable.rating_rate == pytest.approx(33 / 99)
    bad = build_parser().parse_args(
        ["simulate", "plan", "--requests-per-hour", "10", "--ratings-per-hour", "50"]
    )
    assert plan_command(bad, Settings(rollout=SHORT)) == 2
    assert "exceeds the answers per hour" in capsys.readouterr().out
