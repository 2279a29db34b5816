"""The demo's scenarios and paces: what runs, in which order, with which rollout settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tara.demo.scenario import (
    MIN_STAGE_REQUESTS,
    PACES,
    rollout_settings,
    scenarios_for,
    stats_settings,
)
from tara.rollout.config import RolloutSettings
from tara.rollout.sequential import RateTest
from tara.sandbox.config import default_models


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        ("all", ["bad-canary", "good-canary"]),
        ("bad-canary", ["bad-canary"]),
        ("good-canary", ["good-canary"]),
    ],
)
def test_scenarios_for_runs_bad_then_good(choice: str, names: list[str]) -> None:
    assert [s.name for s in scenarios_for(choice)] == names


def test_an_unknown_scenario_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="bad-canary, good-canary, all"):
        scenarios_for("full-loop")


def test_the_candidates_exist_in_the_sandbox_with_the_quality_the_story_tells() -> None:
    models = default_models()
    assert models["tara-candidate-bad"].quality < models["tara-stable"].quality
    assert models["tara-candidate-good"].quality > models["tara-stable"].quality


def test_the_real_pace_keeps_the_strategys_stage_weights_and_stages_compress_to_seconds() -> None:
    cfg = rollout_settings(PACES["real"])
    assert [s.percent for s in cfg.stages] == [10, 25, 50]
    assert [s.intensive for s in cfg.stages] == [True, False, False]
    assert all(s.duration <= timedelta(seconds=20) for s in cfg.stages)
    assert all(s.min_requests == MIN_STAGE_REQUESTS for s in cfg.stages)
    assert cfg.intensive_interval < cfg.interval


def test_the_pace_changes_time_not_the_thresholds_or_confidences() -> None:
    base = RolloutSettings(rating_drop_limit=0.25, fail_confidence=0.99, webhooks=["http://x"])
    cfg = rollout_settings(PACES["quick"], base)
    assert cfg.rating_drop_limit == 0.25
    assert cfg.fail_confidence == 0.99
    assert cfg.error_rate_limit == base.error_rate_limit
    assert cfg.webhooks == []  # the demo does not call an operator's hooks


def test_a_flawless_canary_needs_about_min_stage_requests_to_pass_the_error_test() -> None:
    """Why MIN_STAGE_REQUESTS is 100: fewer requests cannot pass the 95% error-rate test."""
    cfg = RolloutSettings()
    test = RateTest(cfg.error_rate_limit, 1 - cfg.pass_confidence, fail=False)
    assert test.threshold(MIN_STAGE_REQUESTS - 20) < 0 <= test.threshold(MIN_STAGE_REQUESTS)


def test_stats_settings_use_one_second_buckets() -> None:
    stats = stats_settings()
    assert stats.bucket_seconds == 1
    assert stats.rollup_seconds % stats.bucket_seconds == 0
