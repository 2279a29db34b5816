"""The rollout plan built from settings, and its JSON round trip."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import ValidationError

from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.plan import Plan, Stage, plan_from_settings

DAY = 86_400.0


def test_default_plan_follows_the_strategy() -> None:
    plan = plan_from_settings(RolloutSettings())
    assert [s.weight_bp for s in plan.stages] == [1000, 2500, 5000]
    assert [s.min_duration for s in plan.stages] == [3 * DAY, 4 * DAY, 7 * DAY]
    assert [s.intensive for s in plan.stages] == [True, False, False]
    assert plan.stages[0].interval < plan.stages[1].interval
    assert plan.last_index == 2
    assert plan.total_min_duration == 14 * DAY
    assert [s.fail_confidence for s in plan.stages] == [0.775, 0.99, 0.99]


def test_a_stage_without_its_own_rollback_confidence_round_trips_as_before() -> None:
    """A plan stored by older code has no ``fail_confidence``; it loads and saves the same."""
    old = {"weight_bp": 1000, "min_duration": 60.0, "min_requests": 1, "min_ratings": 0,
           "interval": 5.0, "intensive": False}  # fmt: skip
    stage = Stage.from_dict(old)
    assert (stage.fail_confidence, stage.to_dict()) == (None, old)
    assert Stage.from_dict({**old, "fail_confidence": 0.8}).fail_confidence == 0.8


def test_durations_accept_seconds_and_iso_8601() -> None:
    cfg = RolloutSettings.model_validate(
        {
            "stages": [
                {"percent": 5, "duration": 2, "min_requests": 1, "min_ratings": 0},
                {"percent": 50, "duration": "PT3M", "intensive": True},
            ],
            "interval": 1.5,
            "intensive_interval": "PT0.5S",
        }
    )
    plan = plan_from_settings(cfg)
    assert [s.min_duration for s in plan.stages] == [2.0, 180.0]
    assert [s.interval for s in plan.stages] == [1.5, 0.5]
    assert [s.weight_bp for s in plan.stages] == [500, 5000]


@pytest.mark.parametrize("percents", [[25, 10], [10, 10], []])
def test_stage_percents_must_strictly_increase(percents: list[float]) -> None:
    stages = [{"percent": p, "duration": 1} for p in percents]
    with pytest.raises(ValidationError):
        RolloutSettings.model_validate({"stages": stages})


@pytest.mark.parametrize("percent", [0, 100, -5])
def test_stage_percent_is_partial(percent: float) -> None:
    with pytest.raises(ValidationError):
        StageSettings(percent=percent, duration=timedelta(seconds=1))


def test_plan_round_trips_through_json() -> None:
    plan = plan_from_settings(RolloutSettings())
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_stage_defaults_to_not_intensive() -> None:
    data = {"weight_bp": 1, "min_duration": 2, "min_requests": 3, "min_ratings": 4, "interval": 5}
    assert Stage.from_dict(data) == Stage(1, 2.0, 3, 4, 5.0, False)


def test_empty_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        Plan(())
