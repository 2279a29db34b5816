"""``tara finetune runs | show | approve | cancel``: the loop's runs through the admin API.

Like ``tara rollout``, these are clients of the gateway's admin API
(``--url``, default the gateway's own address; the admin key from the
settings), so they see what the controller sees. ``cancel`` keeps its
older form too: given a dataset directory (or nothing, or ``--job``) it
cancels that dataset's job, as ``tara finetune cancel`` always has; given a
run id it asks the controller to stop the run. Exit codes: 0 done, 1 the
API refused (its message is printed), 2 the gateway could not be reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tara.rollout.rollout_cli import AdminApiError, base_url, call, duration
from tara.settings import Settings


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def runs_table(runs: Sequence[Mapping[str, Any]]) -> Table:
    """One row per run, newest first."""
    table = Table(title="Fine-tuning runs")
    for column in ("id", "segment", "state", "for", "triggers", "model", "reason"):
        table.add_column(column, overflow="fold")
    for r in runs:
        state = r["state"] + (" (needs approval)" if r.get("waiting_for_approval") else "")
        table.add_row(
            r["id"],
            r["segment"],
            state,
            duration(r["in_state_seconds"]),
            ", ".join(r["triggers"]),
            r["fine_tuned_model"] or "-",
            r["reason"],
        )
    return table


def _evidence(evidence: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in evidence.items() if not isinstance(v, list | dict)}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def show_run(console: Console, run: Mapping[str, Any]) -> None:
    """A run's story: the triggers that started it, each step, the gate's checks."""
    console.print(runs_table([run["summary"]]))
    table = Table(title="Triggers")
    for column in ("trigger", "value", "threshold", "window", "evidence"):
        table.add_column(column, overflow="fold")
    for t in run["triggers"]:
        table.add_row(
            t["trigger"],
            str(t["value"]),
            f"{t['op']} {t['threshold']}",
            duration(t.get("window_seconds")),
            _evidence(t.get("evidence", {})),
        )
    console.print(table)
    steps = Table(title="Steps")
    for column in ("at", "state", "by", "reason"):
        steps.add_column(column, overflow="fold")
    for s in run["steps"]:
        steps.add_row(_when(s["at"]), s["state"], s["actor"], s["reason"])
    console.print(steps)
    gate = run.get("gate")
    if gate:
        checks = Table(title=f"Gate: {gate['outcome']} against {run['stable_model']}")
        for column in ("check", "rule", "candidate", "stable", "passed"):
            checks.add_column(column)
        for c in gate.get("checks", []):
            checks.add_row(
                c["name"], c["rule"], str(c["candidate"]), str(c["stable"]), str(c["passed"])
            )
        console.print(checks)


def _path(run_id: str, action: str = "") -> str:
    quoted = urllib.parse.quote(run_id, safe="")
    return f"/admin/finetune/runs/{quoted}" + (f"/{action}" if action else "")


def _run(args: argparse.Namespace, settings: Settings, method: str, path: str, body: Any) -> int:
    name = f"tara finetune {args.finetune_command}"
    key = settings.auth.admin_key.get_secret_value()
    try:
        data = call(base_url(args, settings), key, method, path, body)
    except AdminApiError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.exit_code
    console = Console(highlight=False)
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.finetune_command == "runs":
        console.print(runs_table(data["data"]))
    elif args.finetune_command == "show":
        show_run(console, data)
    else:
        console.print(runs_table([data]))
    return 0


def runs_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara finetune runs [--open] [--json]``."""
    query = "?open=true" if args.open else ""
    return _run(args, settings, "GET", f"/admin/finetune/runs{query}", None)


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara finetune show RUN [--json]``."""
    return _run(args, settings, "GET", _path(args.run), None)


def approve_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara finetune approve RUN``: the controller starts the run's canary next tick."""
    return _run(args, settings, "POST", _path(args.run, "approve"), {})


def cancel_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara finetune cancel RUN`` (a run id), else the dataset form of ``train_cli``."""
    target = args.dataset
    if target is None or args.job or target.exists():
        from tara.finetune.train_cli import cancel_command as cancel_dataset_job

        return cancel_dataset_job(args, settings)
    body = {"reason": args.reason or None}
    return _run(args, settings, "POST", _path(str(target), "cancel"), body)
