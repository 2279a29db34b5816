"""The simulator's targets, measured through the real step function, and ``tara simulate``.

Run counts are smaller than ``tara simulate``'s but every bound here can fail:
the measured values (README) sit well inside them.
"""

from __future__ import annotations

import argparse
import json

import pytest

from tara.cli import main
from tara.rollout.config import RolloutSettings
from tara.rollout.simulate import (
    SCENARIOS,
    format_table,
    simulate,
    simulate_command,
    target_met,
    with_effects,
)
from tara.settings import Settings

CFG = RolloutSettings()


def test_identical_canary_is_almost_never_rolled_back() -> None:
    summary = simulate(SCENARIOS["aa"], CFG, runs=200, seed=1)
    assert summary["false_rollback_rate"] <= 0.01
    assert summary["promotion_rate"] >= 0.99
    assert summary["days_to_promotion"]["median"] == pytest.approx(14, abs=0.1)
    assert summary["target_met"] is True


def test_better_canary_is_promoted_through_every_stage() -> None:
    summary = simulate(SCENARIOS["better"], CFG, runs=50, seed=2)
    assert summary["promotion_rate"] == 1.0
    assert summary["target_met"] is True


@pytest.mark.parametrize(
    ("name", "measure", "limit"),
    [
        ("errors", "canary_requests_at_rollback", 200),
        ("ratings", "canary_ratings_at_rollback", 400),
        ("latency", "canary_requests_at_rollback", 500),
    ],
)
def test_bad_canary_is_rolled_back_quickly(name: str, measure: str, limit: float) -> None:
    summary = simulate(SCENARIOS[name], CFG, runs=40, seed=3)
    assert summary["rollback_rate"] == 1.0
    assert summary[measure]["median"] <= limit
    assert summary["harmed_requests"] == summary["canary_requests_at_rollback"]
    assert summary["target_met"] is True


def test_runs_are_reproducible_from_the_seed() -> None:
    first = simulate(SCENARIOS["latency"], CFG, runs=5, seed=9)
    assert simulate(SCENARIOS["latency"], CFG, runs=5, seed=9) == first
    assert simulate(SCENARIOS["latency"], CFG, runs=5, seed=10) != first


def test_custom_effects_replace_the_canary_and_drop_the_target() -> None:
    custom = with_effects(SCENARIOS["aa"], error_rate=0.3, rating_delta=-1.0, latency_factor=3.0)
    assert custom.name == "aa+custom"
    assert (custom.canary.error_rate, custom.canary.rating_mean) == (0.3, 3.0)
    assert custom.canary.latency_median == pytest.approx(3 * SCENARIOS["aa"].canary.latency_median)
    assert custom.stable == SCENARIOS["aa"].stable
    assert with_effects(SCENARIOS["aa"], traffic=50).requests_per_hour == 50
    assert with_effects(SCENARIOS["aa"]) is SCENARIOS["aa"]
    summary = simulate(custom, CFG, runs=3, seed=1)
    assert summary["rollback_rate"] == 1.0
    assert summary["target_met"] is None


def test_a_missed_target_is_reported() -> None:
    lax = RolloutSettings(error_rate_limit=0.5)
    summary = simulate(SCENARIOS["errors"], lax, runs=3, seed=1)
    assert summary["rollback_rate"] == 0.0
    assert summary["target_met"] is False
    assert "NO" in format_table([summary])


def test_target_met_without_a_target() -> None:
    assert target_met("custom", {}) is None


def _args(**overrides: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "scenario": "errors", "runs": 4, "seed": 0, "traffic": None, "error_rate": None,
        "rating_delta": None, "latency_factor": None, "json": False,
    }  # fmt: skip
    return argparse.Namespace(**(base | overrides))


def test_command_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate_command(_args(), Settings()) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["scenario", "runs", "promoted"]
    assert out.splitlines()[1].startswith("errors")


def test_command_exits_1_when_a_target_is_missed(capsys: pytest.CaptureFixture[str]) -> None:
    lax = Settings(rollout=RolloutSettings(error_rate_limit=0.5))
    assert simulate_command(_args(runs=2), lax) == 1
    assert "NO" in capsys.readouterr().out


def test_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--scenario", "latency", "--runs", "3", "--seed", "5", "--json"])
    assert code == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["scenario"] == "latency"
    assert summary["runs"] == 3
    assert summary["cpu_seconds"] >= 0
