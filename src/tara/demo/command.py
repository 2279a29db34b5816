"""``tara demo``: run the scenarios, show them live, write the HTML report, print a summary.

Exit status 0 when every scenario ended as it should (the bad canary rolled
back, the good one promoted to stable), 1 otherwise. ``--json`` prints only
the summary (for scripts); ``--no-live`` prints decisions line by line
instead of the live view. The interaction log lives in a temporary
directory that is removed at the end; the report is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tara.demo.report import write_report
from tara.demo.runner import DemoOptions, DemoState, Update, run_demo
from tara.demo.scenario import PACES, scenarios_for
from tara.loops import run_in_loop
from tara.settings import Settings

REPORT_NAME = "tara-demo-report.html"


def default_report_path(cwd: Path) -> Path:
    """``tara-demo-report.html`` in ``cwd`` if it is writable, else in the temp directory."""
    if os.access(cwd, os.W_OK):
        return cwd / REPORT_NAME
    return Path(tempfile.gettempdir()) / REPORT_NAME


def summary(state: DemoState, wall: float, report: Path | None) -> dict[str, Any]:
    """What ``--json`` prints: each scenario's outcome and decisions, and the run's facts."""
    pace = state.options.pace
    return {
        "ok": state.timeline.ok,
        "seed": state.options.seed,
        "pace": pace.name,
        "stages_percent": list(pace.stage_percents),
        "wall_seconds": round(wall, 1),
        "report": str(report) if report is not None else None,
        "scenarios": [r.to_dict() for r in state.timeline.results],
        "students": dict(state.counts),
    }


def report_meta(state: DemoState, wall: float) -> dict[str, Any]:
    """The facts table of the report."""
    pace = state.options.pace
    stages = ", ".join(
        f"{p:g}% for {s:g}s" for p, s in zip(pace.stage_percents, pace.stage_seconds, strict=True)
    )
    return {
        "seed": state.options.seed,
        "pace": pace.name,
        "stages (minimum time; each also needs 100 canary requests)": stages,
        "arrival rate": f"{pace.arrival_rate:g} questions/s from {pace.students} students",
        "sandbox latency": "real (150 ms median first token)" if pace.real_latency else "10 ms",
        "fine-tuning loop": (
            f"triggers over the last {pace.trigger_period:g} s, looked at every "
            f"{pace.loop_interval:g} s; a run needs {pace.min_training_examples} examples rated "
            f"≥ 4; sandbox training takes {pace.training_seconds:g} s"
        ),
        "wall time": f"{wall:.1f} s",
        "students": ", ".join(f"{k} {v}" for k, v in sorted(state.counts.items())),
    }


@contextlib.contextmanager
def quiet_logs(level: str) -> Iterator[None]:
    """Keep routine warnings (dev keys, injected upstream errors) and the HTTP clients'
    request lines (the loop's evaluation) out of the live view."""
    tara, root = logging.getLogger("tara"), logging.getLogger()
    before = tara.level, root.level
    if level != "DEBUG":
        tara.setLevel(logging.ERROR)
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        tara.setLevel(before[0])
        root.setLevel(before[1])


class DecisionPrinter:
    """``--no-live``: one line per decision as it happens."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.printed = 0

    def __call__(self, state: DemoState) -> None:
        markers = state.timeline.events
        for m in markers[self.printed :]:
            reason = m.reason.splitlines()[0] if m.reason else ""
            self.console.print(
                f"{m.t:6.1f}s  {m.scenario:<12} {m.decision:<11} by {m.actor:<10} "
                f"weight {m.weight:>4.0%}  {reason}",
                highlight=False,
                soft_wrap=True,
            )
        self.printed = len(markers)


def _run(settings: Settings, options: DemoOptions, on_update: Update) -> DemoState:
    result: list[DemoState] = []

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="tara-demo-") as data_dir:
            result.append(await run_demo(settings, options, Path(data_dir), on_update))

    run_in_loop(main())
    return result[0]


def run_with_view(
    settings: Settings, options: DemoOptions, mode: str, console: Console
) -> DemoState:
    """Run the demo with the live view (``live``), decision lines (``lines``) or silently."""
    if mode == "live":
        from tara.demo.view import render

        with Live(Text("starting…"), console=console, refresh_per_second=4) as live:
            return _run(settings, options, lambda s: live.update(render(s)))
    if mode == "lines":
        return _run(settings, options, DecisionPrinter(console))
    return _run(settings, options, lambda _s: None)


def print_summary(console: Console, data: dict[str, Any]) -> None:
    """The human summary after the run."""
    for s in data["scenarios"]:
        mark = "[green]✓[/]" if s["ok"] else "[red]✗[/]"
        outcome = s["outcome"] or s["error"]
        console.print(
            f"{mark} {s['scenario']}: {s['candidate']} {outcome} after {s['seconds']} s "
            f"(expected {s['expected']}); stable model now {s['stable_model']}",
            soft_wrap=True,
        )
    verdict = "every scenario ended as expected" if data["ok"] else "NOT every scenario ended well"
    console.print(f"{verdict}; {data['wall_seconds']} s in all.")
    if data["report"]:
        console.print(f"report: {data['report']}")


def demo_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara demo [--scenario S] [--seed N] [--json] [--report PATH] [--no-live] [--pace P]``."""
    options = DemoOptions(tuple(scenarios_for(args.scenario)), PACES[args.pace], args.seed)
    report = args.report if args.report is not None else default_report_path(Path.cwd())
    console = Console(stderr=args.json)
    mode = "quiet" if args.json else "lines" if args.no_live or not console.is_terminal else "live"
    started = time.monotonic()
    try:
        with quiet_logs(settings.log_level):
            state = run_with_view(settings, options, mode, console)
    except OSError as exc:
        print(f"tara demo: cannot run: {exc}", file=sys.stderr)
        return 1
    wall = time.monotonic() - started
    written: Path | None = report
    try:
        write_report(report, state.timeline, report_meta(state, wall))
    except OSError as exc:
        print(f"tara demo: cannot write the report to {report}: {exc}", file=sys.stderr)
        written = None
    data = summary(state, wall, written)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print_summary(console, data)
    return 0 if data["ok"] else 1
