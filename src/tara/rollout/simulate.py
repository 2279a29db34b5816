"""``tara simulate``: whole rollouts on a virtual clock, through the real ``step``.

Each run starts a rollout, and every analysis interval draws what the canary
and stable did (:mod:`tara.rollout.traffic`), adds it to the stage's stats
and calls :func:`tara.rollout.decide.step` exactly as the controller does.
Many seeded runs measure what matters to students and SREs: how often a good
canary is wrongly rolled back, how fast a bad one is caught, and how many
requests the bad one served meanwhile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tara.rollout.actions import Rollback
from tara.rollout.bucketing import BUCKETS
from tara.rollout.config import RolloutSettings
from tara.rollout.decide import step
from tara.rollout.model import Phase, Rollout, start
from tara.rollout.plan import Plan, plan_from_settings
from tara.rollout.routing import Segment
from tara.rollout.traffic import LookSampler, VariantProfile
from tara.telemetry.quantiles import sample_quantile
from tara.telemetry.windows import WindowStats

if TYPE_CHECKING:
    from tara.settings import Settings

Expect = Literal["promote", "rollback"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """Two variants, the traffic they share, and what a correct controller does."""

    name: str
    description: str
    stable: VariantProfile
    canary: VariantProfile
    expect: Expect
    requests_per_hour: float = 1200.0
    target: str = ""


_BASE = VariantProfile()

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("aa", "identical canary and stable", _BASE, _BASE, "promote",
                 target="false rollbacks <= 1%"),
        Scenario("errors", "canary fails 20% of requests (stable 1%)", _BASE,
                 dataclasses.replace(_BASE, error_rate=0.20), "rollback",
                 target="median canary requests to rollback <= 200"),
        Scenario("ratings", "canary rated 0.5 lower", _BASE,
                 dataclasses.replace(_BASE, rating_mean=_BASE.rating_mean - 0.5), "rollback",
                 target="median canary ratings to rollback <= 400"),
        Scenario("latency", "canary 2.5x slower (p95 too)", _BASE,
                 dataclasses.replace(_BASE, latency_median=_BASE.latency_median * 2.5),
                 "rollback", target="median canary requests to rollback <= 500"),
        Scenario("better", "canary rated 0.3 higher", _BASE,
                 dataclasses.replace(_BASE, rating_mean=_BASE.rating_mean + 0.3), "promote",
                 target="promoted through every stage >= 99%"),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunResult:
    """How one simulated rollout ended."""

    outcome: Literal["promoted", "rolled_back", "undecided"]
    seconds: float
    stage_index: int
    canary_requests: int
    canary_ratings: int


Samplers = list[tuple[LookSampler, LookSampler]]


def stage_samplers(scenario: Scenario, plan: Plan) -> Samplers:
    """Per stage, the (canary, stable) samplers of one look at that stage's weight."""
    samplers = []
    for stage in plan.stages:
        per_look = scenario.requests_per_hour * stage.interval / 3600.0
        share = stage.weight_bp / BUCKETS
        samplers.append(
            (
                LookSampler(scenario.canary, per_look * share),
                LookSampler(scenario.stable, per_look * (1.0 - share)),
            )
        )
    return samplers


def run_once(
    cfg: RolloutSettings, plan: Plan, samplers: Samplers, rng: random.Random, max_seconds: float
) -> RunResult:
    """Simulate one rollout until it is promoted, rolled back or out of time."""
    rollout = Rollout("sim", "tara-tutor", Segment(), "stable", "candidate", "salt", plan)
    rollout, _ = start(rollout, 0.0)
    now, canary_requests, canary_ratings = 0.0, 0, 0
    canary, stable = WindowStats(), WindowStats()
    while now < max_seconds:
        index = rollout.stage_index
        canary_sampler, stable_sampler = samplers[index]
        now += plan.stages[index].interval
        before = canary.rating_count
        canary_requests += canary_sampler.sample(rng, canary)
        canary_ratings += canary.rating_count - before
        stable_sampler.sample(rng, stable)
        rollout, actions = step(rollout, canary, stable, cfg, now)
        if rollout.phase is Phase.SUCCEEDED:
            return RunResult("promoted", now, index, canary_requests, canary_ratings)
        if any(isinstance(a, Rollback) for a in actions):
            return RunResult("rolled_back", now, index, canary_requests, canary_ratings)
        if rollout.stage_index != index:
            canary, stable = WindowStats(), WindowStats()
    return RunResult("undecided", now, rollout.stage_index, canary_requests, canary_ratings)


def _quantiles(values: list[float]) -> dict[str, float | None]:
    return {
        "median": sample_quantile(values, 0.5),
        "p90": sample_quantile(values, 0.9),
        "max": max(values, default=None),
    }


def summarise(scenario: Scenario, results: list[RunResult]) -> dict[str, Any]:
    """Rates and detection statistics of many runs, with the scenario's target checked."""
    runs = len(results)
    backs = [r for r in results if r.outcome == "rolled_back"]
    promoted = sum(r.outcome == "promoted" for r in results)
    harmed = [float(r.canary_requests) for r in backs] if scenario.expect == "rollback" else []
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "runs": runs,
        "promotion_rate": promoted / runs if runs else None,
        "rollback_rate": len(backs) / runs if runs else None,
        "undecided_rate": sum(r.outcome == "undecided" for r in results) / runs if runs else None,
        "false_rollback_rate": len(backs) / runs if runs and scenario.expect == "promote" else None,
        "detection_hours": _quantiles([r.seconds / 3600 for r in backs]),
        "canary_requests_at_rollback": _quantiles([float(r.canary_requests) for r in backs]),
        "canary_ratings_at_rollback": _quantiles([float(r.canary_ratings) for r in backs]),
        "harmed_requests": _quantiles(harmed),
        "days_to_promotion": _quantiles(
            [r.seconds / 86400 for r in results if r.outcome == "promoted"]
        ),
        "target": scenario.target,
    }
    summary["target_met"] = target_met(scenario.name, summary)
    return summary


_ROLLBACK_TARGETS = {
    "errors": ("canary_requests_at_rollback", 200),
    "ratings": ("canary_ratings_at_rollback", 400),
    "latency": ("canary_requests_at_rollback", 500),
}


def target_met(name: str, summary: dict[str, Any]) -> bool | None:
    """Whether a built-in scenario's target holds in ``summary`` (``None``: no target)."""
    if name in _ROLLBACK_TARGETS:
        measure, limit = _ROLLBACK_TARGETS[name]
        median = summary[measure]["median"]
        return median is not None and summary["rollback_rate"] >= 0.5 and median <= limit
    if name == "aa":
        return bool(summary["false_rollback_rate"] <= 0.01)
    if name == "better":
        return bool(summary["promotion_rate"] >= 0.99)
    return None


def simulate(scenario: Scenario, cfg: RolloutSettings, runs: int, seed: int = 0) -> dict[str, Any]:
    """Run ``runs`` seeded rollouts of ``scenario`` and summarise them."""
    plan = plan_from_settings(cfg)
    max_seconds = plan.total_min_duration * cfg.stall_factor
    rng = random.Random(seed)
    samplers = stage_samplers(scenario, plan)
    results = [run_once(cfg, plan, samplers, rng, max_seconds) for _ in range(runs)]
    return summarise(scenario, results)


def with_effects(
    scenario: Scenario,
    *,
    traffic: float | None = None,
    error_rate: float | None = None,
    rating_delta: float | None = None,
    latency_factor: float | None = None,
) -> Scenario:
    """``scenario`` with a custom canary effect or traffic (its built-in target then lapses)."""
    if traffic is None and error_rate is None and rating_delta is None and latency_factor is None:
        return scenario
    canary = scenario.canary
    if error_rate is not None:
        canary = dataclasses.replace(canary, error_rate=error_rate)
    if rating_delta is not None:
        canary = dataclasses.replace(canary, rating_mean=canary.rating_mean + rating_delta)
    if latency_factor is not None:
        canary = dataclasses.replace(canary, latency_median=canary.latency_median * latency_factor)
    return dataclasses.replace(
        scenario,
        name=f"{scenario.name}+custom",
        canary=canary,
        requests_per_hour=traffic if traffic is not None else scenario.requests_per_hour,
        target="",
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(summaries: list[dict[str, Any]]) -> str:
    """The simulator's results as a plain-text table."""
    header = (
        "scenario", "runs", "promoted", "rolled back", "detect h (med)",
        "canary req (med/p90)", "canary ratings (med)", "harmed req (med/p90)", "target", "met",
    )  # fmt: skip
    rows = [header]
    for s in summaries:
        req, rat = s["canary_requests_at_rollback"], s["canary_ratings_at_rollback"]
        harmed = s["harmed_requests"]
        met = s["target_met"]
        rows.append(
            (
                s["scenario"],
                str(s["runs"]),
                _fmt(s["promotion_rate"], ".1%"),
                _fmt(s["rollback_rate"], ".1%"),
                _fmt(s["detection_hours"]["median"], ".1f"),
                f"{_fmt(req['median'], '.0f')}/{_fmt(req['p90'], '.0f')}",
                _fmt(rat["median"], ".0f"),
                f"{_fmt(harmed['median'], '.0f')}/{_fmt(harmed['p90'], '.0f')}",
                s["target"] or "-",
                "-" if met is None else ("yes" if met else "NO"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def simulate_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara simulate``: run scenarios, print a table (or JSON); exit 1 if a target is missed."""
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    summaries = []
    for name in names:
        scenario = with_effects(
            SCENARIOS[name],
            traffic=args.traffic,
            error_rate=args.error_rate,
            rating_delta=args.rating_delta,
            latency_factor=args.latency_factor,
        )
        began = time.process_time()
        summary = simulate(scenario, settings.rollout, args.runs, args.seed)
        summary["cpu_seconds"] = round(time.process_time() - began, 2)
        summaries.append(summary)
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(format_table(summaries))
    return 1 if any(s["target_met"] is False for s in summaries) else 0
