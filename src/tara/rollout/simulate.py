"""``tara simulate``: whole rollouts on a virtual clock, thousands at a time.

Each simulated rollout looks at its canary and stable every analysis
interval of its stage, draws what both did meanwhile
(:mod:`tara.rollout.traffic`) and decides as :func:`tara.rollout.decide.step`
does, through the same verdict functions of :mod:`tara.rollout.analysis`,
vectorised over rollouts (numpy). :func:`replay` runs traced rollouts through
the real ``step``, and the tests hold both to the same decisions at the same
looks. Many seeded runs measure what matters to students and SREs: how often
a good canary is wrongly rolled back, how fast a bad one is caught, how many
requests it served meanwhile.

The scenarios (canary effects, outages, goals) are in
:mod:`tara.rollout.scenarios`. ``tara simulate plan`` answers the operator's
question before a rollout: with this traffic, how long will each stage take,
and what is the smallest rating drop, error rate and slowdown caught with 95%
probability by the end of each stage (by simulation over a grid of effects).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tara.rollout.analysis import (
    Levels,
    error_verdicts,
    latency_verdicts,
    rating_rate_verdicts,
    rating_verdicts,
    sample_ratio_verdicts,
)
from tara.rollout.bucketing import BUCKETS
from tara.rollout.config import RolloutSettings
from tara.rollout.plan import plan_from_settings
from tara.rollout.scenarios import HOUR, SCENARIOS, Scenario, Traffic, with_effects
from tara.rollout.traffic import BUCKETS as LATENCY_BUCKETS
from tara.rollout.traffic import Rates, VariantProfile, draw
from tara.telemetry.windows import WindowStats

if TYPE_CHECKING:
    from tara.settings import Settings

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]

DAY = 86_400.0

UNDECIDED, PROMOTED, ROLLED_BACK, PAUSED = 0, 1, 2, 3
OUTCOMES = ("undecided", "promoted", "rolled_back", "paused")


@dataclass(frozen=True, slots=True)
class Lanes:
    """How a batch of simulated rollouts ended, one entry per rollout."""

    outcome: Ints
    seconds: Floats
    stage: Ints
    canary_requests: Floats
    canary_ratings: Floats
    harmed_requests: Floats
    """Canary requests served after the canary turned bad (all of them if bad from the start)."""
    flagged: NDArray[np.bool_]
    stage_seconds: Floats
    """``(rollouts, stages)``: how long each stage lasted (``nan`` if never finished)."""
    traces: list[list[tuple[float, WindowStats, WindowStats]]]
    """For the first ``trace`` rollouts: ``(time, canary, stable)`` stage stats at every look."""


@dataclass
class _Arm:
    """One variant's stage stats, one row per rollout."""

    rollouts: int

    def __post_init__(self) -> None:
        self.requests = np.zeros(self.rollouts)
        self.errors = np.zeros(self.rollouts)
        self.latency = np.zeros((self.rollouts, LATENCY_BUCKETS))
        self.ratings = np.zeros((self.rollouts, 5))
        self.students = np.zeros(self.rollouts, dtype=np.int64)
        self.population = np.zeros(self.rollouts)

    def reset(self, rows: Ints, population: Floats) -> None:
        for a in (self.requests, self.errors, self.latency, self.ratings, self.students):
            a[rows] = 0
        self.population[rows] = population

    def add(self, rows: Ints, requests: Ints, errors: Ints, latency: Ints, ratings: Ints,
            students: Ints) -> None:  # fmt: skip
        self.requests[rows] += requests
        self.errors[rows] += errors
        self.latency[rows] += latency
        self.ratings[rows] += ratings
        self.students[rows] += students

    def stats(self, row: int) -> WindowStats:
        """One rollout's stats as the controller would read them."""
        errors = int(self.errors[row])
        return WindowStats(
            requests=int(self.requests[row]),
            errors={"upstream": errors} if errors else {},
            latency=[int(x) for x in self.latency[row]],
            ratings=[int(x) for x in self.ratings[row]],
            students=int(self.students[row]),
        )


def run(
    cfg: RolloutSettings,
    traffic: Traffic,
    scenario: Scenario,
    canaries: Sequence[VariantProfile],
    rng: np.random.Generator,
    *,
    max_seconds: float | None = None,
    trace: int = 0,
) -> Lanes:
    """Simulate one rollout per canary profile until each is decided or out of time."""
    plan = plan_from_settings(cfg)
    stages = plan.stages
    n = len(canaries)
    max_seconds = max_seconds or plan.total_min_duration * cfg.stall_factor
    weight = np.array([s.weight_bp / BUCKETS for s in stages])
    interval = np.array([s.interval for s in stages])
    levels = [Levels.of(cfg, s) for s in stages]
    stable_rates = Rates.of([traffic.stable] * n)
    bad_rates = Rates.of(list(canaries))
    good_rates = stable_rates
    degrade_at = scenario.degrade_at_hours * HOUR
    population = float(traffic.students)

    canary, stable = _Arm(n), _Arm(n)
    stage = np.zeros(n, dtype=np.int64)
    now = np.zeros(n)
    began = np.zeros(n)
    outcome = np.zeros(n, dtype=np.int64)
    ended = np.full(n, np.nan)
    flagged = np.zeros(n, dtype=bool)
    total_requests, total_ratings, harmed = np.zeros(n), np.zeros(n), np.zeros(n)
    stage_seconds = np.full((n, len(stages)), np.nan)
    traces: list[list[tuple[float, WindowStats, WindowStats]]] = [[] for _ in range(min(trace, n))]

    def enter(rows: Ints) -> None:
        share = weight[stage[rows]] * scenario.srm_factor
        routed = rng.binomial(traffic.students, share).astype(np.float64)
        canary.reset(rows, routed)
        stable.reset(rows, population - routed)

    enter(np.arange(n))
    live = np.arange(n)
    while live.size:
        k = stage[live]
        dt = interval[k]
        now[live] += dt
        middle = now[live] - dt / 2
        outage = scenario.outage.added_errors(middle) if scenario.outage else np.zeros(live.size)
        expected = traffic.requests_per_hour * dt / HOUR
        share = canary.population[live] / population
        bad = middle >= degrade_at
        rates = _pick(bad, bad_rates, good_rates, live)
        c = draw(rng, expected * share, rates, outage,
                 (canary.population[live] - canary.students[live]).astype(np.int64),
                 canary.population[live])  # fmt: skip
        s = draw(rng, expected * (1 - share), _rows(stable_rates, live), outage,
                 (stable.population[live] - stable.students[live]).astype(np.int64),
                 stable.population[live])  # fmt: skip
        canary.add(live, c.requests, c.errors, c.latency, c.ratings, c.new_students)
        stable.add(live, s.requests, s.errors, s.latency, s.ratings, s.new_students)
        total_requests[live] += c.requests
        total_ratings[live] += c.ratings.sum(axis=1)
        harmed[live] += np.where(bad, c.requests, 0)
        for row in live[live < len(traces)]:
            traces[row].append((float(now[row]), canary.stats(row), stable.stats(row)))
        decided = _decide(cfg, stages, levels, weight, live, k, now, began, canary, stable)
        paused, failed, passed, flags = decided
        flagged[live] |= flags
        last = k == len(stages) - 1
        finish = np.where(paused, PAUSED, np.where(failed, ROLLED_BACK, np.where(
            passed & last, PROMOTED, UNDECIDED)))  # fmt: skip
        done = finish != UNDECIDED
        outcome[live[done]] = finish[done]
        ended[live[done]] = now[live[done]]
        moving = live[passed & ~last & ~paused & ~failed]
        stage_seconds[moving, stage[moving]] = now[moving] - began[moving]
        promoted = live[done & (finish == PROMOTED)]
        stage_seconds[promoted, stage[promoted]] = now[promoted] - began[promoted]
        stage[moving] += 1
        began[moving] = now[moving]
        if moving.size:
            enter(moving)
        out_of_time = now[live] >= max_seconds
        live = live[~done & ~out_of_time]
    ended = np.where(np.isnan(ended), now, ended)
    return Lanes(
        outcome,
        ended,
        stage,
        total_requests,
        total_ratings,
        harmed,
        flagged,
        stage_seconds,
        traces,
    )


def _rows(rates: Rates, rows: Ints) -> Rates:
    return Rates(rates.errors[rows], rates.latency[rows], rates.ratings[rows])


def _pick(bad: NDArray[np.bool_], if_bad: Rates, if_good: Rates, rows: Ints) -> Rates:
    b = bad[:, None]
    return Rates(
        np.where(bad, if_bad.errors[rows], if_good.errors[rows]),
        np.where(b, if_bad.latency[rows], if_good.latency[rows]),
        np.where(b, if_bad.ratings[rows], if_good.ratings[rows]),
    )


def _decide(
    cfg: RolloutSettings,
    stages: Sequence[Any],
    levels: list[Levels],
    weight: Floats,
    live: Ints,
    k: Ints,
    now: Floats,
    began: Floats,
    canary: _Arm,
    stable: _Arm,
) -> tuple[NDArray[np.bool_], ...]:
    """``(paused, failed, passed, flagged)`` of each live rollout, as ``step`` decides them.

    ``paused``: a sample ratio mismatch (nothing else is decided on that data);
    ``failed``: any check fails; ``passed``: every check passes and the stage's
    minimum time, requests and ratings are reached.
    """
    size = live.size
    paused, failed, passed, flagged = (np.zeros(size, dtype=bool) for _ in range(4))
    for index, stage in enumerate(stages):
        at = np.nonzero(k == index)[0]
        if not at.size:
            continue
        rows, lv = live[at], levels[index]
        c_err, c_req, s_err, s_req = (
            canary.errors[rows],
            canary.requests[rows],
            stable.errors[rows],
            stable.requests[rows],
        )
        srm = sample_ratio_verdicts(
            canary.students[rows], stable.students[rows], c_req, s_req, weight[index], cfg, lv
        )
        e_fail, e_pass, _ = error_verdicts(c_err, c_req, s_err, s_req, cfg.error_rate_limit, lv)
        r_fail, r_pass, _, _ = rating_verdicts(canary.ratings[rows], stable.ratings[rows], cfg, lv)
        lat = latency_verdicts(canary.latency[rows], stable.latency[rows], cfg, lv)
        c_rated = canary.ratings[rows].sum(axis=1)
        parity = rating_rate_verdicts(
            c_rated, c_req - c_err, stable.ratings[rows].sum(axis=1), s_req - s_err, cfg, lv
        )
        fail = e_fail | r_fail | lat.fail
        gate = (
            (now[rows] - began[rows] >= stage.min_duration)
            & (c_req >= stage.min_requests)
            & (c_rated >= stage.min_ratings)
        )
        srm &= now[rows] - began[rows] >= cfg.srm_grace.total_seconds()
        paused[at] = srm
        flagged[at] = parity & ~srm
        failed[at] = fail & ~srm
        passed[at] = e_pass & r_pass & lat.passing & gate & ~fail & ~srm
    return paused, failed, passed, flagged


def replay(
    cfg: RolloutSettings, trace: list[tuple[float, WindowStats, WindowStats]]
) -> tuple[str, float]:
    """Run one traced rollout through the real :func:`~tara.rollout.decide.step`.

    Returns how it ended (an :data:`OUTCOMES` name) and when, to compare with
    the vectorised run that produced the trace.
    """
    from tara.rollout.decide import step  # the simulator itself never needs it
    from tara.rollout.model import Phase, Rollout, start
    from tara.rollout.routing import Segment

    plan = plan_from_settings(cfg)
    rollout = Rollout("sim", "tara-tutor", Segment(), "stable", "candidate", "salt", plan)
    rollout, _ = start(rollout, 0.0)
    phases = {
        Phase.SUCCEEDED: "promoted", Phase.ROLLED_BACK: "rolled_back", Phase.PAUSED: "paused"
    }  # fmt: skip
    when = 0.0
    for when, canary, stable in trace:
        rollout, _ = step(rollout, canary, stable, cfg, when)
        if rollout.phase in phases:
            return phases[rollout.phase], when
    return "undecided", when


# -- many rollouts, summarised ---------------------------------------------------------
def _quantiles(values: Floats) -> dict[str, float | None]:
    if not values.size:
        return {"median": None, "p95": None, "max": None}
    return {
        "median": float(np.median(values)),
        "p95": float(np.quantile(values, 0.95, method="inverted_cdf")),
        "max": float(values.max()),
    }


def summarise(scenario: Scenario, traffic: Traffic, lanes: Lanes) -> dict[str, Any]:
    """Rates and detection statistics of many runs, with the scenario's goals checked."""
    runs = int(lanes.outcome.size)
    back = lanes.outcome == ROLLED_BACK
    promoted = lanes.outcome == PROMOTED

    def rate(mask: NDArray[np.bool_]) -> float:
        return float(mask.mean()) if runs else math.nan

    since = scenario.degrade_at_hours * HOUR
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "effect": scenario.effect.describe(traffic.stable),
        "runs": runs,
        "promotion_rate": rate(promoted),
        "rollback_rate": rate(back),
        "pause_rate": rate(lanes.outcome == PAUSED),
        "undecided_rate": rate(lanes.outcome == UNDECIDED),
        "flag_rate": rate(lanes.flagged),
        "hours_to_rollback": _quantiles((lanes.seconds[back] - since) / HOUR),
        "canary_requests_at_rollback": _quantiles(lanes.canary_requests[back]),
        "canary_ratings_at_rollback": _quantiles(lanes.canary_ratings[back]),
        "harmed_requests": _quantiles(lanes.harmed_requests[back]),
        "days_to_promotion": _quantiles(lanes.seconds[promoted] / DAY),
        "goals": [str(g) for g in scenario.goals],
    }
    summary["goals_met"] = all(g.met(summary) for g in scenario.goals) if scenario.goals else None
    return summary


def simulate(
    scenario: Scenario,
    cfg: RolloutSettings,
    runs: int,
    seed: int = 0,
    traffic: Traffic | None = None,
) -> dict[str, Any]:
    """Run ``runs`` seeded rollouts of ``scenario`` and summarise them."""
    traffic = traffic or Traffic()
    rng = np.random.default_rng(seed)
    canary = scenario.effect.apply(traffic.stable)
    lanes = run(cfg, traffic, scenario, [canary] * runs, rng)
    return summarise(scenario, traffic, lanes)


def _fmt(value: float | None, spec: str) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def format_table(summaries: list[dict[str, Any]]) -> str:
    """The simulator's results as a plain-text table."""
    header = (
        "scenario", "runs", "effect", "rolled back", "promoted", "paused",
        "canary req at rollback (med/p95)", "ratings (med)", "days to 100% (med)", "goals met",
    )  # fmt: skip
    rows = [header]
    for s in summaries:
        req, rat = s["canary_requests_at_rollback"], s["canary_ratings_at_rollback"]
        met = s["goals_met"]
        rows.append(
            (
                s["scenario"],
                str(s["runs"]),
                s["effect"],
                _fmt(s["rollback_rate"], ".1%"),
                _fmt(s["promotion_rate"], ".1%"),
                _fmt(s["pause_rate"], ".1%"),
                f"{_fmt(req['median'], '.0f')}/{_fmt(req['p95'], '.0f')}",
                _fmt(rat["median"], ".0f"),
                _fmt(s["days_to_promotion"]["median"], ".1f"),
                "-" if met is None else ("yes" if met else "NO"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def traffic_from(args: argparse.Namespace) -> Traffic:
    """The traffic and stable profile the command-line options describe."""
    base, default = VariantProfile(), Traffic()

    def option(name: str, default: float) -> float:
        value = getattr(args, name, None)
        return default if value is None else float(value)

    stable = VariantProfile(
        error_rate=option("stable_error_rate", base.error_rate),
        latency_median=option("stable_latency", base.latency_median),
        latency_sigma=base.latency_sigma,
        rating_mean=option("rating_mean", base.rating_mean),
        rating_spread=option("rating_spread", base.rating_spread),
        rating_rate=option("rating_rate", base.rating_rate),
    )
    return Traffic(
        requests_per_hour=option("traffic", default.requests_per_hour),
        students=int(option("students", default.students)),
        stable=stable,
    )


def simulate_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara simulate``: run scenarios, print a table (or JSON); exit 1 if a goal is missed."""
    traffic = traffic_from(args)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    summaries = []
    for name in names:
        scenario = with_effects(
            SCENARIOS[name],
            traffic.stable,
            error_rate=args.error_rate,
            rating_delta=args.rating_delta,
            latency_factor=args.latency_factor,
            degrade_at_hours=args.degrade_at,
            outage=args.outage,
        )
        began = time.process_time()
        summary = simulate(scenario, settings.rollout, args.runs, args.seed, traffic)
        summary["cpu_seconds"] = round(time.process_time() - began, 2)
        summaries.append(summary)
    if args.json:
        print(json.dumps(summaries, indent=2))
    else:
        print(format_table(summaries))
    return 1 if any(s["goals_met"] is False for s in summaries) else 0
