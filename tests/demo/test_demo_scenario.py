"""The demo's scenarios and paces: what runs, in which order, with which rollout settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tara.demo.scenario import (
    FULL_LOOP,
    MIN_STAGE_REQUESTS,
    PACES,
    Pace,
    fine_tuning,
    loop_settings,
    rollout_settings,
    scenarios_for,
    stats_settings,
)
from tara.finetune.eval_config import GateSettings
from tara.retrain.config import RuleAction
from tara.rollout.config import RolloutSettings
from tara.rollout.sequential import RateTest
from tara.sandbox.config import default_models
from tara.settings import Settings
from tara.triggers.config import TriggerSettings
from tara.triggers.rules import LOW_RATING, TRIGGERS


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        ("all", ["bad-canary", "good-canary", "full-loop"]),
        ("bad-canary", ["bad-canary"]),
        ("good-canary", ["good-canary"]),
        ("full-loop", ["full-loop"]),
    ],
)
def test_scenarios_for_runs_bad_then_good_then_the_loop(choice: str, names: list[str]) -> None:
    assert [s.name for s in scenarios_for(choice)] == names


def test_an_unknown_scenario_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="bad-canary, good-canary, full-loop, all"):
        scenarios_for("loop")


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


def test_in_the_full_loop_only_the_weak_segment_finds_the_existing_models_poor() -> None:
    quality = FULL_LOOP.quality
    assert quality("math", "hi", "tara-stable", 0.75) == FULL_LOOP.weak_quality
    assert quality("math", "hi", "tara-candidate-good", 0.88) == FULL_LOOP.weak_quality
    assert quality("math", "hi", "ft:gpt-4-0613:tara:abc", 0.93) == 0.93  # trained on them
    assert quality("physics", "en", "tara-stable", 0.75) == 0.75
    assert 1 + 4 * FULL_LOOP.weak_quality < TriggerSettings().max_rating_mean  # it must fire


@pytest.mark.parametrize("pace", list(PACES.values()), ids=list(PACES))
def test_the_loop_runs_on_settings_with_compressed_clocks_not_on_special_code(
    pace: Pace, tmp_path: Path
) -> None:
    sections = loop_settings(pace, "http://127.0.0.1:1/v1", tmp_path)
    settings = Settings(**sections)  # type: ignore[arg-type]
    assert settings.triggers.period == timedelta(seconds=pace.trigger_period)
    assert settings.retrain.interval == timedelta(seconds=pace.loop_interval)
    assert settings.retrain.min_training_examples == pace.min_training_examples
    assert settings.retrain.data_dir == tmp_path / "runs"
    assert settings.retrain.auto_deploy is True
    # Only the quality rule starts runs; every other rule only alerts.
    starting = [r for r in TRIGGERS if settings.retrain.action(r) is RuleAction.START_RUN]
    assert starting == [LOW_RATING]
    # The gate's margins are the configured ones; the judge grades, latency noise is forgiven.
    gate = settings.finetune.evaluation.gate
    assert gate.accuracy_margin == GateSettings().accuracy_margin
    assert settings.finetune.evaluation.judge_model == "tara-judge"
    assert settings.finetune.base_url == "http://127.0.0.1:1/v1"
    assert fine_tuning(pace).training_seconds == pace.training_seconds
