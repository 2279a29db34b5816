"""``tara triggers check``: every trigger, its value against its threshold, and what fires.

Prints a rich table (or JSON with ``--json``) and the ``tara finetune
prepare`` commands the firing triggers would run, then the controller's
fine-tuning loop as the shared state holds it: the open runs, each
segment's cooldown, and what the controller would decide on these results
now. It starts nothing and writes no state; run start times (the cooldown
and "since the last run") come from the loop's trigger ledger in Redis, or
without Redis from ``triggers.json`` in ``triggers.state_dir``. Window
stats come from Redis when the settings use it; otherwise (a separate
process has no in-memory window store) per-track latency is summed from
the interaction log. Exit codes: 0 checked (whether or not anything
fired), 1 telemetry or state could not be read, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shlex
import sys
from typing import Any

from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from tara.finetune.prepare_cli import parse_time
from tara.retrain.operations import loop_view
from tara.retrain.stores import Ledger, StoreError
from tara.rollout.service import RolloutService
from tara.settings import Settings
from tara.state import open_state
from tara.triggers.check import CheckReport, Verdict, iso, run_check
from tara.triggers.state import StateError, TriggerState

_STYLE = {"fired": "bold red", "ok": "green", "insufficient": "dim"}


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "+∞"
    if value == int(value) and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.3g}"


def _outcome(verdict: Verdict) -> str:
    outcome = verdict.result.outcome
    text = {"fired": "FIRES", "ok": "no", "insufficient": "not enough data"}[outcome]
    if verdict.cooling_down:
        text = "fired, cooling down"
    return f"[{_STYLE[outcome]}]{text}[/]"


def _evidence(verdict: Verdict) -> str:
    parts = []
    for name, value in verdict.result.evidence.items():
        if name == "since" and isinstance(value, int | float):
            value = iso(value)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            # Knowledge gaps: one "grade=10 rating_mean=2.5 ..." per cell.
            value = "[" + "; ".join(" ".join(f"{k}={v}" for k, v in d.items()) for d in value) + "]"
        parts.append(f"{name}={value}")
    return ", ".join(parts)


def _sample(verdict: Verdict) -> str:
    r = verdict.result
    if r.sample is None:
        return "—"
    return f"{r.sample:,}" if r.min_sample is None else f"{r.sample:,} / {r.min_sample:,}"


def render(report: CheckReport, console: Console) -> None:
    """The report as a rich table plus the runs that would start."""
    table = Table(title=f"Fine-tuning triggers as of {iso(report.at)}")
    columns = ("trigger", "scope", "value", "threshold", "sample / min", "fires?", "evidence")
    for column in columns:
        table.add_column(column, overflow="fold")
    for v in report.verdicts:
        r = v.result
        table.add_row(
            r.name,
            r.scope.key,
            _number(r.value),
            f"{r.op} {_number(r.threshold)}",
            _sample(v),
            _outcome(v),
            _evidence(v),
        )
    console.print(table)
    runs = report.runs()
    if not runs:
        console.print(f"{len(report.fired)} fired; no fine-tuning run would start.")
        return
    console.print(f"{len(report.fired)} fired; would run (not started):")
    for args in runs:
        console.print(f"  {shlex.join(args)}", markup=False)
    for verdict in report.verdicts:
        if verdict.would_start and verdict.base_model is not None:
            track = verdict.result.scope.key
            console.print(f"  then for {track}: train on {verdict.base_model}", markup=False)


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


async def _check(
    settings: Settings, now: float | None, since: float | None
) -> tuple[CheckReport, dict[str, Any]]:
    async with contextlib.aclosing(open_state(settings)) as state:
        # Window stats in this process's memory would be empty: read the log instead.
        windows = state.windows if state.shared else None
        if state.shared:
            ledger = (await state.ledger.load()).ledger
        else:  # nothing persists in this process's memory: the file, as before the loop
            ledger = Ledger(TriggerState.load(settings.triggers.state_dir))
        # A promotion changes the stable model: a shared routing table knows which it is now.
        stable = await RolloutService.over(state, settings).current_stable_models()
        report = await run_check(
            settings,
            now=now,
            volume_since=since,
            windows=windows,
            stable_models=stable,
            state=ledger.triggers,
        )
        runs = await state.runs.list()
    results = [v.result for v in report.verdicts]
    return report, loop_view(settings, results, ledger, runs, report.at)


def render_loop(loop: dict[str, Any], console: Console) -> None:
    """The loop's view: each segment's open run, cooldown and what a look now would do."""
    would = {d["segment"]: d for d in loop["would"]}
    table = Table(title="The controller's fine-tuning loop")
    for column in ("segment", "open run", "cooling down until", "a look now would"):
        table.add_column(column, overflow="fold")
    opened = {r["segment"]: r for r in loop["open_runs"]}
    labels = sorted({s["segment"] for s in loop["segments"]} | set(would))
    cooldowns = {s["segment"]: s for s in loop["segments"]}
    for label in labels:
        run = opened.get(label)
        until = cooldowns.get(label, {}).get("cooldown_until")
        cooling = cooldowns.get(label, {}).get("cooling_down")
        decision = would.get(label)
        table.add_row(
            label,
            f"{run['id']} ({run['state']})" if run else "—",
            iso(until) if until and cooling else "—",
            ("start a run: " if decision["start"] else "not start: ") + decision["reason"]
            if decision
            else "—",
        )
    console.print(table)
    checked = loop["checked_at"]
    last = f"last look {iso(checked)}" if checked else "no look yet"
    state = "on" if loop["enabled"] else "off (retrain.enabled)"
    alerting = ", ".join(loop["alert_only"]) or "none"
    console.print(f"loop {state}; {last}; firing rules that only alert: {alerting}")


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara triggers check [--json] [--since T] [--at T]``."""
    try:
        since = parse_time(args.since) if args.since else None
        now = parse_time(args.at) if args.at else None
    except ValueError as exc:
        print(f"tara triggers check: {exc}", file=sys.stderr)
        return 2
    try:
        report, loop = asyncio.run(_check(settings, now, since))
    except (StateError, StoreError, OSError, ValueError, RedisError) as exc:
        print(f"tara triggers check: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_json_safe({**report.as_json(), "loop": loop}), indent=2))
    else:
        console = Console(file=sys.stdout, highlight=False)
        render(report, console)
        render_loop(loop, console)
    return 0
