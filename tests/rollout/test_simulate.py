"""The simulator: the same decisions as ``step``, its scenarios, and ``tara simulate``.

Run counts are small; the goals over 1,000+ rollouts live in ``bench/simulate_report.md``.
Every bound here can still fail: the measured values sit well inside them.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

import numpy as np
import pytest

from tara.cli import build_parser, main
from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.scenarios import (
    SCENARIOS,
    Effect,
    Goal,
    Outage,
    Traffic,
    parse_outage,
    with_effects,
)
from tara.rollout.simulate import (
    OUTCOMES,
    format_table,
    replay,
    run,
    simulate,
    simulate_command,
)
from tara.rollout.traffic import VariantProfile
from tara.settings import Settings

CFG = RolloutSettings()
SHORT = RolloutSettings(
    stages=[
        StageSettings(percent=10, duration=timedelta(hours=8), min_requests=300, min_ratings=60,
                      intensive=True, fail_confidence=0.8),
        StageSettings(percent=50, duration=timedelta(hours=4), min_requests=300, min_ratings=60),
    ],
    interval=timedelta(minutes=30),
    intensive_interval=timedelta(minutes=10),
)  # fmt: skip
"""Short stages: whole rollouts in a few hundred looks."""


@pytest.mark.parametrize(
    "name", ["aa", "errors", "ratings", "latency", "srm", "rating-rate", "outage", "degrade"]
)
def test_the_simulator_decides_what_step_decides(name: str) -> None:
    """Traced rollouts replayed through the real ``step`` end the same way at the same look."""
    scenario = SCENARIOS[name]
    if scenario.degrade_at_hours:
        scenario = with_effects(scenario, Traffic().stable, degrade_at_hours=3.0)
    traffic = Traffic(requests_per_hour=1200, students=3000)
    canary = scenario.effect.apply(traffic.stable)
    lanes = run(SHORT, traffic, scenario, [canary] * 6, np.random.default_rng(1), trace=6)
    for row, trace in enumerate(lanes.traces):
        outcome, when = replay(SHORT, trace)
        assert (outcome, when) == (OUTCOMES[lanes.outcome[row]], lanes.seconds[row])


def test_identical_canaries_are_promoted_and_bad_ones_rolled_back() -> None:
    aa = simulate(SCENARIOS["aa"], SHORT, runs=100, seed=1)
    assert (aa["rollback_rate"], aa["promotion_rate"]) == (0.0, 1.0)
    assert aa["days_to_promotion"]["median"] == pytest.approx(0.5, abs=0.01)
    errors = simulate(SCENARIOS["errors"], CFG, runs=200, seed=2)
    assert errors["rollback_rate"] == 1.0
    assert errors["canary_requests_at_rollback"]["median"] <= 120
    assert errors["harmed_requests"] == errors["canary_requests_at_rollback"]


def test_the_guards_pause_and_flag_in_their_scenarios() -> None:
    srm = simulate(SCENARIOS["srm"], SHORT, runs=50, seed=3)
    assert (srm["pause_rate"], srm["rollback_rate"]) == (1.0, 0.0)
    shy = simulate(SCENARIOS["rating-rate"], CFG, runs=50, seed=3)
    assert (shy["flag_rate"], shy["promotion_rate"]) == (1.0, 1.0)
    early = with_effects(SCENARIOS["outage"], Traffic().stable, outage=Outage(1.0, 1.0, 0.3))
    outage = simulate(early, SHORT, runs=50, seed=3)
    assert outage["rollback_rate"] == 0.0


def test_a_canary_that_degrades_late_harms_only_from_then() -> None:
    late = with_effects(SCENARIOS["degrade"], Traffic().stable, degrade_at_hours=9.0)
    summary = simulate(late, SHORT, runs=30, seed=4)
    assert summary["rollback_rate"] == 1.0
    assert summary["harmed_requests"]["max"] < summary["canary_requests_at_rollback"]["median"]
    assert 0 < summary["hours_to_rollback"]["median"] < 3


def test_runs_are_reproducible_from_the_seed() -> None:
    first = simulate(SCENARIOS["latency"], CFG, runs=5, seed=9)
    assert simulate(SCENARIOS["latency"], CFG, runs=5, seed=9) == first
    assert simulate(SCENARIOS["latency"], CFG, runs=5, seed=10) != first


@pytest.mark.parametrize(
    ("options", "error_rate", "rating_mean", "latency"),
    [
        ({"rating_delta": -0.2}, 0.01, 3.8, 2.0),
        ({"error_rate": 0.3}, 0.3, 3.5, 2.0),
        ({"latency_factor": 1.5}, 0.01, 3.5, 3.0),
    ],
)
def test_custom_effects_replace_the_scenarios_own_and_drop_its_goals(
    options: dict[str, float], error_rate: float, rating_mean: float, latency: float
) -> None:
    stable = VariantProfile()
    custom = with_effects(SCENARIOS["ratings"], stable, **options)
    canary = custom.effect.apply(stable)
    assert (canary.error_rate, canary.rating_mean) == (error_rate, pytest.approx(rating_mean))
    assert canary.latency_median == pytest.approx(latency)
    assert (custom.name, custom.goals) == ("ratings+custom", ())
    assert "replacing rating -0.5" in custom.description
    assert with_effects(SCENARIOS["ratings"], stable) is SCENARIOS["ratings"]


def test_effects_describe_themselves() -> None:
    stable = VariantProfile()
    assert Effect().describe(stable) == "identical to stable"
    assert Effect(error_rate=0.07, latency_factor=2.3).describe(stable) == (
        "errors 7% (stable 1%), 2.3x slower"
    )


@pytest.mark.parametrize(
    ("goal", "summary", "met"),
    [
        (Goal("rollback_rate", "<=", 0.05), {"rollback_rate": 0.04}, True),
        (Goal("rollback_rate", ">=", 0.95), {"rollback_rate": 0.9}, False),
        (Goal("a.median", "<=", 100), {"a": {"median": 100.0}}, True),
        (Goal("a.median", "<=", 100), {"a": {"median": None}}, False),
    ],
)
def test_goals(goal: Goal, summary: dict[str, object], met: bool) -> None:
    assert goal.met(summary) is met


def test_a_missed_goal_is_reported() -> None:
    lax = SHORT.model_copy(update={"error_rate_limit": 0.5})
    summary = simulate(SCENARIOS["errors"], lax, runs=3, seed=1)
    assert summary["rollback_rate"] == 0.0
    assert summary["goals_met"] is False
    assert "NO" in format_table([summary])


def test_outage_option_parses_or_says_how() -> None:
    assert parse_outage("24,2,0.3") == Outage(24.0, 2.0, 0.3)
    with pytest.raises(argparse.ArgumentTypeError, match="HOUR,HOURS,RATE"):
        parse_outage("24h")


def _args(**overrides: object) -> argparse.Namespace:
    return build_parser().parse_args(["simulate", "--scenario", "errors", "--runs", "4"])


def test_command_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_command(_args(), Settings()) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["scenario", "runs", "effect"]
    assert out.splitlines()[1].startswith("errors")


def test_command_exits_1_when_a_goal_is_missed(capsys: pytest.CaptureFixture[str]) -> None:
    lax = Settings(rollout=SHORT.model_copy(update={"error_rate_limit": 0.5}))
    assert simulate_command(_args(), lax) == 1
    assert "NO" in capsys.readouterr().out


def test_cli_prints_json_with_stable_options(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "simulate", "--scenario", "latency", "--runs", "3", "--seed", "5", "--json",
        "--stable-latency", "1.0", "--rating-rate", "0.5", "--outage", "1,1,0.2",
    ])  # fmt: skip
    assert code == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert (summary["scenario"], summary["runs"]) == ("latency+custom", 3)
    assert "outage: +20% errors in both variants from hour 1 for 1 h" in summary["description"]
    assert summary["cpu_seconds"] >= 0
