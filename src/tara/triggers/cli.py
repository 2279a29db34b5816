"""``tara triggers check``: every trigger, its value against its threshold, and what fires.

Prints a rich table (or JSON with ``--json``) and the ``tara finetune
prepare`` commands the firing triggers would run; it starts nothing and
writes no state. Window stats come from Redis when the settings use it;
otherwise (a separate process has no in-memory window store) per-track
latency is summed from the interaction log. Exit codes: 0 checked (whether
or not anything fired), 1 telemetry or state could not be read, 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shlex
import sys

from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from tara.finetune.prepare_cli import parse_time
from tara.settings import Settings
from tara.state import open_state
from tara.triggers.check import CheckReport, Verdict, iso, run_check
from tara.triggers.state import StateError

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


async def _check(settings: Settings, now: float | None, since: float | None) -> CheckReport:
    async with contextlib.aclosing(open_state(settings)) as state:
        # Window stats in this process's memory would be empty: read the log instead.
        windows = state.windows if state.shared else None
        # A promotion changes the stable model: a shared routing table knows which it is now.
        stable = {name: track.stable_model for name, track in settings.tracks.items()}
        table = await state.routing.load_table() if state.shared else None
        if table is not None:
            stable |= {name: route.stable_model for name, route in table.tracks.items()}
        return await run_check(
            settings, now=now, volume_since=since, windows=windows, stable_models=stable
        )


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara triggers check [--json] [--since T] [--at T]``."""
    try:
        since = parse_time(args.since) if args.since else None
        now = parse_time(args.at) if args.at else None
    except ValueError as exc:
        print(f"tara triggers check: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_check(settings, now, since))
    except (StateError, OSError, ValueError, RedisError) as exc:
        print(f"tara triggers check: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_json_safe(report.as_json()), indent=2))
    else:
        render(report, Console(file=sys.stdout, highlight=False))
    return 0
