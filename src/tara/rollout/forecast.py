"""``tara simulate plan``: what a rollout will take and catch, for a segment's traffic.

Before rolling out to, say, Tamil chemistry, an operator wants to know two
things: how long each configured stage will last at that segment's traffic
(a stage passes no sooner than its minimum time, requests and ratings allow),
and how bad a canary must be for the controller to catch it with 95%
probability by the end of each stage.

Both come from simulation through the controller's own verdicts
(:mod:`tara.rollout.simulate`): identical canaries for the stage times, and
for each fallback trigger a grid of effect sizes, the canary bad from the
start. The smallest effect caught is interpolated between grid points
where the catch rate crosses 95%.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tara.rollout.bucketing import BUCKETS
from tara.rollout.config import RolloutSettings
from tara.rollout.plan import plan_from_settings
from tara.rollout.scenarios import HOUR, Effect, Scenario, Traffic
from tara.rollout.simulate import DAY, ROLLED_BACK, run, traffic_from
from tara.rollout.traffic import VariantProfile

if TYPE_CHECKING:
    from tara.settings import Settings

CATCH = 0.95
"""Probability of a rollback by a stage's end that counts as "caught"."""
GRID = 16
"""Effect sizes tried per trigger."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """One fallback trigger's effect axis: how an effect size becomes a canary."""

    name: str
    unit: str
    sizes: tuple[float, ...]

    def effect(self, size: float, stable: VariantProfile) -> Effect:
        """The canary effect of this size."""
        if self.name == "error_rate":
            return Effect(error_rate=size)
        if self.name == "rating_drop":
            return Effect(rating_delta=-min(size, stable.rating_mean - 1.0))
        return Effect(latency_factor=size)


def triggers(cfg: RolloutSettings, stable: VariantProfile) -> tuple[Trigger, ...]:
    """The three triggers, each with a grid from just past its limit to far past it."""
    err = cfg.error_rate_limit
    drop = cfg.rating_drop_limit
    ratio = cfg.latency_ratio_limit
    top_drop = max(drop * 1.05, stable.rating_mean - 1.0)
    return (
        Trigger("error_rate", "canary error rate", _geometric(err * 1.05, min(0.9, err * 10))),
        Trigger("rating_drop", "rating drop", _geometric(drop * 1.05, top_drop)),
        Trigger("slowdown", "times slower", _geometric(ratio * 1.03, ratio * 5)),
    )


def _geometric(low: float, high: float) -> tuple[float, ...]:
    return tuple(float(x) for x in np.geomspace(low, high, GRID))


def stage_floor_seconds(cfg: RolloutSettings, traffic: Traffic) -> list[float]:
    """Each stage's shortest time: what its minimum duration, requests and ratings need."""
    rated_per_request = traffic.stable.rating_rate * (1 - traffic.stable.error_rate)
    out = []
    for stage in plan_from_settings(cfg).stages:
        rate = traffic.requests_per_hour * stage.weight_bp / BUCKETS / HOUR
        needs = [stage.min_duration, stage.min_requests / rate if rate else math.inf]
        if stage.min_ratings:
            needs.append(stage.min_ratings / (rate * rated_per_request) if rate else math.inf)
        out.append(max(needs))
    return out


def smallest_caught(sizes: tuple[float, ...], caught: list[float]) -> float | None:
    """The effect size where the catch rate first reaches :data:`CATCH` (interpolated)."""
    for i, rate in enumerate(caught):
        if rate >= CATCH:
            if i == 0:
                return sizes[0]
            below, size_below = caught[i - 1], sizes[i - 1]
            share = (CATCH - below) / (rate - below)
            return size_below + share * (sizes[i] - size_below)
    return None


def _median(values: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    """Median of the finite values (``nan`` if none)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def forecast(cfg: RolloutSettings, traffic: Traffic, runs: int, seed: int) -> dict[str, Any]:
    """Stage times and the smallest effects caught by each stage's end (see the module)."""
    rng = np.random.default_rng(seed)
    plan = plan_from_settings(cfg)
    floors = stage_floor_seconds(cfg, traffic)
    max_seconds = sum(floors) * max(cfg.stall_factor, 1.5)
    same = Scenario("plan", "identical canary", Effect(), "promote")
    aa = run(cfg, traffic, same, [traffic.stable] * runs, rng, max_seconds=max_seconds)
    durations = [_median(aa.stage_seconds[:, k]) for k in range(len(plan.stages))]
    ends = np.cumsum([d if math.isfinite(d) else f for d, f in zip(durations, floors, strict=True)])
    stages: list[dict[str, Any]] = []
    for k, stage in enumerate(plan.stages):
        share = stage.weight_bp / BUCKETS
        seconds = durations[k] if math.isfinite(durations[k]) else floors[k]
        stages.append(
            {
                "stage": k + 1,
                "weight": share,
                "minimum_hours": stage.min_duration / HOUR,
                "expected_hours": seconds / HOUR,
                "canary_requests": traffic.requests_per_hour * share * seconds / HOUR,
                "canary_ratings": traffic.requests_per_hour
                * share
                * seconds
                / HOUR
                * traffic.stable.rating_rate
                * (1 - traffic.stable.error_rate),
                "smallest_caught": {},
            }
        )
    for trigger in triggers(cfg, traffic.stable):
        canaries = [
            trigger.effect(size, traffic.stable).apply(traffic.stable)
            for size in trigger.sizes
            for _ in range(runs)
        ]
        lanes = run(cfg, traffic, same, canaries, rng, max_seconds=float(ends[-1]))
        back = (lanes.outcome == ROLLED_BACK).reshape(len(trigger.sizes), runs)
        when = lanes.seconds.reshape(len(trigger.sizes), runs)
        for k, end in enumerate(ends):
            caught = [float(x) for x in (back & (when <= end + 1e-6)).mean(axis=1)]
            stages[k]["smallest_caught"][trigger.name] = smallest_caught(trigger.sizes, caught)
    return {
        "requests_per_hour": traffic.requests_per_hour,
        "ratings_per_hour": traffic.requests_per_hour
        * traffic.stable.rating_rate
        * (1 - traffic.stable.error_rate),
        "stable": {
            "error_rate": traffic.stable.error_rate,
            "latency_median_seconds": traffic.stable.latency_median,
            "rating_mean": traffic.stable.rating_mean,
        },
        "method": f"simulation: {runs} rollouts per effect size ({GRID} sizes per trigger) and "
        f"{runs} identical canaries, seed {seed}; the canary is bad from the start; "
        f"caught = rolled back by the stage's expected end with probability >= {CATCH:.0%}",
        "stages": stages,
        "total_days": float(ends[-1]) / DAY,
    }


def _cell(value: float | None, fmt: str) -> str:
    return "not caught" if value is None else format(value, fmt)


def format_forecast(result: dict[str, Any]) -> str:
    """The forecast as the text ``tara simulate plan`` prints."""
    lines = [
        f"traffic: {result['requests_per_hour']:g} requests/hour, "
        f"{result['ratings_per_hour']:g} ratings/hour in the segment; stable fails "
        f"{result['stable']['error_rate']:.1%}, median latency "
        f"{result['stable']['latency_median_seconds']:g}s, mean rating "
        f"{result['stable']['rating_mean']:g}",
        f"method: {result['method']}",
        "",
    ]
    header = (
        "stage", "weight", "min time", "expected time", "canary req", "canary ratings",
        "caught: error rate", "rating drop", "slowdown",
    )  # fmt: skip
    rows = [header]
    for s in result["stages"]:
        c = s["smallest_caught"]
        rows.append(
            (
                str(s["stage"]),
                f"{s['weight']:.0%}",
                _duration(s["minimum_hours"]),
                _duration(s["expected_hours"]),
                f"{s['canary_requests']:.0f}",
                f"{s['canary_ratings']:.0f}",
                _cell(c.get("error_rate"), ".1%"),
                _cell(c.get("rating_drop"), ".2f"),
                _cell(c.get("slowdown"), ".2f") + ("x" if c.get("slowdown") else ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    lines.append(
        f"to 100%: {result['total_days']:.1f} days. 'caught' columns: the smallest effect "
        f"rolled back by the end of that stage in {CATCH:.0%} of rollouts (cumulative)."
    )
    return "\n".join(lines)


def _duration(hours: float) -> str:
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def plan_traffic(args: argparse.Namespace) -> Traffic:
    """The traffic ``--requests-per-hour``/``--ratings-per-hour`` and the stable options say."""
    if args.requests_per_hour <= 0 or args.ratings_per_hour < 0:
        msg = "--requests-per-hour must be positive and --ratings-per-hour not negative"
        raise ValueError(msg)
    base = traffic_from(args)
    answered = args.requests_per_hour * (1 - base.stable.error_rate)
    if args.ratings_per_hour > answered:
        msg = (
            f"--ratings-per-hour {args.ratings_per_hour:g} exceeds the answers per hour "
            f"({answered:g})"
        )
        raise ValueError(msg)
    stable = replace(base.stable, rating_rate=args.ratings_per_hour / answered)
    return replace(base, requests_per_hour=args.requests_per_hour, stable=stable)


def plan_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara simulate plan``: print the forecast for the configured stages (2 on bad input)."""
    try:
        traffic = plan_traffic(args)
    except ValueError as exc:
        print(f"tara simulate plan: {exc}")
        return 2
    result = forecast(settings.rollout, traffic, args.runs, args.seed)
    print(json.dumps(result, indent=2) if args.json else format_forecast(result))
    return 0
