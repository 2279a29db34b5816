"""The canary statistics' report: goals, trade-off table and plans, over seeded rollouts.

Runs every built-in ``tara simulate`` scenario and a sweep of effect sizes per
fallback trigger (each over ``--runs`` rollouts, default settings and
traffic), plus ``tara simulate plan`` for two segments, and writes
``bench/simulate_report.md``. Tasks run in ``--workers`` processes; each
task has its own seed (``--seed`` plus its index), so the report is the same
on any machine and with any number of workers.

    .venv/bin/python bench/simulate_report.py --runs 2000 --seed 0 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tara.rollout.config import RolloutSettings
from tara.rollout.forecast import forecast, format_forecast
from tara.rollout.scenarios import SCENARIOS, Effect, Scenario, Traffic
from tara.rollout.simulate import simulate
from tara.rollout.traffic import VariantProfile

OUT = Path(__file__).with_name("simulate_report.md")

SWEEPS: dict[str, list[tuple[str, Effect]]] = {
    "error rate (stable 1%)": [
        (f"{p:.0%}", Effect(error_rate=p))
        for p in (0.02, 0.04, 0.05, 0.06, 0.07, 0.08, 0.10, 0.15, 0.20, 0.50)
    ],
    "rating drop (stable 4.0)": [
        (f"{d:.1f}", Effect(rating_delta=-d)) for d in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
    ],
    "slowdown (stable median 2 s)": [
        (f"{f:g}x", Effect(latency_factor=f)) for f in (1.5, 1.8, 2.0, 2.3, 2.5, 3.0, 4.0)
    ],
}
PLANS = ((1200.0, 356.4, 5000), (30.0, 6.0, 300))
"""``(requests/hour, ratings/hour, students)``: the default segment, and a small one."""


PLAN_RUNS = 100
"""Rollouts per effect size in the plans (16 sizes per trigger, 3 triggers)."""


def _scenario(task: tuple[str, Any, int, int]) -> dict[str, Any]:
    kind, what, runs, seed = task
    began = time.process_time()
    if kind == "plan":
        rph, ratings, students = what
        stable = replace(VariantProfile(), rating_rate=ratings / (rph * 0.99))
        traffic = Traffic(requests_per_hour=rph, students=students, stable=stable)
        result = forecast(RolloutSettings(), traffic, PLAN_RUNS, seed)
        text = format_forecast(result)
        return {"kind": kind, "text": text, "seed": seed, "cpu": time.process_time() - began}
    scenario = what if isinstance(what, Scenario) else Scenario("sweep", "", what, "rollback")
    summary = simulate(scenario, RolloutSettings(), runs, seed)
    return {"kind": kind, "summary": summary, "cpu": time.process_time() - began}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _hours(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _goal_rows(summaries: list[dict[str, Any]]) -> list[str]:
    rows = ["| scenario | canary | goal | measured | met |", "|---|---|---|---|---|"]
    for s in summaries:
        for goal in SCENARIOS[s["scenario"]].goals:
            value: Any = s
            for part in goal.measure.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            shown = _pct(value) if goal.measure.endswith("_rate") else _num(value)
            met = "yes" if goal.met(s) else "**NO**"
            rows.append(f"| {s['scenario']} | {s['effect']} | {goal} | {shown} | {met} |")
    return rows


def _scenario_rows(summaries: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| scenario | what | rolled back | promoted | paused | flagged | canary requests at "
        "rollback (median / p95) | ratings at rollback (median) | hours to rollback (median) "
        "| days to 100% (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        req = s["canary_requests_at_rollback"]
        rows.append(
            f"| {s['scenario']} | {s['description']} | {_pct(s['rollback_rate'])} | "
            f"{_pct(s['promotion_rate'])} | {_pct(s['pause_rate'])} | {_pct(s['flag_rate'])} | "
            f"{_num(req['median'])} / {_num(req['p95'])} | "
            f"{_num(s['canary_ratings_at_rollback']['median'])} | "
            f"{_hours(s['hours_to_rollback']['median'])} | "
            f"{_hours(s['days_to_promotion']['median'])} |"
        )
    return rows


def _sweep_rows(label: str, results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = [
        f"| {label} | rolled back | promoted | canary requests to rollback (median / p95) | "
        "canary ratings to rollback (median / p95) | hours (median) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in results:
        req, rat = s["canary_requests_at_rollback"], s["canary_ratings_at_rollback"]
        rows.append(
            f"| {name} | {_pct(s['rollback_rate'])} | {_pct(s['promotion_rate'])} | "
            f"{_num(req['median'])} / {_num(req['p95'])} | "
            f"{_num(rat['median'])} / {_num(rat['p95'])} | "
            f"{_hours(s['hours_to_rollback']['median'])} |"
        )
    return rows


def main() -> None:
    """Run everything and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="rollouts per scenario/effect")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tasks: list[tuple[str, Any, int, int]] = [
        ("scenario", s, args.runs, 0) for s in SCENARIOS.values()
    ]
    tasks += [("sweep", effect, args.runs, 0) for items in SWEEPS.values() for _, effect in items]
    tasks += [("plan", plan, args.runs, 0) for plan in PLANS]
    tasks = [(kind, what, runs, args.seed + i) for i, (kind, what, runs, _) in enumerate(tasks)]
    began = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(_scenario, tasks, chunksize=1)
    wall = time.monotonic() - began
    cpu = sum(r["cpu"] for r in results)
    scenarios = [r["summary"] for r in results if r["kind"] == "scenario"]
    sweeps = iter(r["summary"] for r in results if r["kind"] == "sweep")
    plans = [(r["text"], r["seed"]) for r in results if r["kind"] == "plan"]
    lines = [
        "# Canary statistics: simulated rollouts",
        "",
        "Generated by `bench/simulate_report.py` (regenerate with "
        f"`.venv/bin/python bench/simulate_report.py --runs {args.runs} --seed {args.seed} "
        f"--workers {args.workers}`). Every rollout runs through the controller's own verdict "
        "functions (`tara.rollout.analysis`); the tests replay traced rollouts through "
        "`step` (`tara.rollout.decide`) and check they end the same way at the same look.",
        "",
        f"**{args.runs} seeded rollouts per scenario and per effect size**, default settings "
        "(stages 10% / 25% / 50% for 3 / 4 / 7 days; 10-minute looks in stage 1, hourly after; "
        "rollback confidence 0.775 in stage 1 and 0.99 after, pass confidence 0.95).",
        "",
        "**Traffic** (every goal assumes it): 1,200 requests/hour in the segment from 5,000 "
        "students, so the 10% canary gets about 120 requests/hour, 20 per look; stable fails 1% "
        "of requests, answers in a lognormal time (median 2 s, sigma 0.5: p95 4.6 s) and 30% of "
        "answers are rated (ratings 1-5 from a rounded normal, mean 4.0). Each canary differs "
        "only as its row says, from the rollout's start unless said otherwise.",
        "",
        f"CPU: {cpu:.0f} s in {args.workers} processes, {wall:.0f} s wall on "
        f"{platform.machine()} (a shared, loaded 2-core machine: CPU-seconds are noisy).",
        "",
        "## Goals",
        "",
        *_goal_rows(scenarios),
        "",
        "A canary past a limit is never promoted in more than 1% of rollouts (the `-past` "
        'rows): that is the "false promotion of a worse arm". Identical arms (`aa`) are '
        "rolled back in at most 1%.",
        "",
        "## Scenarios",
        "",
        *_scenario_rows(scenarios),
        "",
        "## Trade-off: effect size against evidence to a decision",
        "",
        "Rollouts whose canary differs from stable only by the effect in the first column. "
        "Requests and ratings are the canary's, counted from the rollout's start to the "
        "rollback (over all rollouts rolled back).",
        "",
    ]
    for label, items in SWEEPS.items():
        lines += [*_sweep_rows(label, [(name, next(sweeps)) for name, _ in items]), ""]
    lines += ["## Plans: `tara simulate plan`", ""]
    for (rph, ratings, students), (text, seed) in zip(PLANS, plans, strict=True):
        lines += [
            f"`tara simulate plan --requests-per-hour {rph:g} --ratings-per-hour {ratings:g} "
            f"--students {students} --runs {PLAN_RUNS} --seed {seed}`",
            "",
            "```",
            text,
            "```",
            "",
        ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
