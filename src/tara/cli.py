"""The ``tara`` command: the composition root that turns settings into running parts.

Each subcommand names a ``module:function`` that is imported only when the
command runs, so ``tara sandbox`` does not pay for the controller's imports.
Command functions take ``(args, settings)`` and return an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tara.settings import ConfigError, Settings, load_settings

Command = Callable[[argparse.Namespace, Settings], int]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML or YAML config file (TARA_* variables override it)",
    )


def _target(parser: argparse.ArgumentParser, target: str) -> None:
    parser.set_defaults(_target=target)
    _common(parser)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="tara", description="Tara gateway: ship fine-tuned LLMs safely."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the OpenAI-compatible gateway")
    p.add_argument("--host", default=None, help="listen address (default: server.host)")
    p.add_argument("--port", type=int, default=None, help="listen port (default: server.port)")
    p.add_argument(
        "--insecure-dev-keys",
        action="store_true",
        help="start with the built-in development keys even beyond loopback or with "
        "Redis/PostgreSQL (refused otherwise)",
    )
    _target(p, "tara.gateway.server:serve_command")

    p = sub.add_parser("sandbox", help="run the local OpenAI-compatible upstream")
    p.add_argument("--host", default="127.0.0.1", help="listen address")
    p.add_argument("--port", type=int, default=8081, help="listen port (default 8081)")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible behaviour")
    p.add_argument(
        "--models", type=Path, default=None, help="TOML/YAML file with per-model behaviour"
    )
    _target(p, "tara.sandbox.server:sandbox_command")

    p = sub.add_parser("log", help="maintain the interaction log")
    log_sub = p.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    lp = log_sub.add_parser("purge", help="delete interactions past their retention")
    lp.add_argument(
        "--older-than",
        default=None,
        help="age such as 30d, 12h, 2w (default: telemetry.retention_days)",
    )
    _target(lp, "tara.telemetry.log_cli:purge_command")

    p = sub.add_parser("finetune", help="build datasets, run and evaluate fine-tuning")
    ft_sub = p.add_subparsers(dest="finetune_command", required=True, metavar="ACTION")
    fp = ft_sub.add_parser("prepare", help="extract, validate and split a training dataset")
    fp.add_argument("--output", type=Path, default=None, help="directory for the dataset files")
    fp.add_argument("--min-rating", type=int, default=None, help="lowest rating kept (4)")
    fp.add_argument(
        "--min-interactions", type=int, default=None, help="smallest language×subject (100)"
    )
    fp.add_argument("--since", default=None, help="start, ISO date/time or unix seconds")
    fp.add_argument("--until", default=None, help="end (exclusive), ISO date/time or unix seconds")
    fp.add_argument("--track", default=None, help="only this track")
    fp.add_argument("--segment", default=None, help="only this segment")
    fp.add_argument("--seed", type=int, default=None, help="split seed (finetune.split.seed)")
    fp.add_argument(
        "--from-jsonl", type=Path, default=None, help="read an interaction export, not the log"
    )
    _target(fp, "tara.finetune.prepare_cli:prepare_command")
    for name, help_text in (
        ("start", "upload a prepared dataset and start its fine-tuning job (never twice)"),
        ("status", "show the fine-tuning job of a dataset (--follow: until it ends)"),
        ("cancel", "cancel the fine-tuning job of a dataset"),
    ):
        ft = ft_sub.add_parser(name, help=help_text)
        ft.add_argument(
            "dataset", nargs="?", type=Path, default=None, help="dataset dir (finetune.output_dir)"
        )
        ft.add_argument("--json", action="store_true", help="print JSON for scripts")
        if name == "start":
            ft.add_argument("--force", action="store_true", help="retry a failed/cancelled run")
        else:
            ft.add_argument("--job", default=None, help="a job id instead of the dataset's run")
        if name == "status":
            ft.add_argument("--follow", action="store_true", help="watch until the job ends")
        _target(ft, f"tara.finetune.train_cli:{name}_command")
    fe = ft_sub.add_parser("evaluate", help="gate a fine-tuned candidate against stable offline")
    fe.add_argument("--dataset", type=Path, required=True, help="dataset dir (with test.jsonl)")
    fe.add_argument("--candidate", required=True, help="candidate model id")
    fe.add_argument("--stable", default=None, help="stable model (default: the track's)")
    fe.add_argument("--limit", type=int, default=None, help="evaluate the first N examples")
    fe.add_argument("--json", action="store_true", help="print the report as JSON")
    _target(fe, "tara.finetune.eval_cli:evaluate_command")

    p = sub.add_parser("controller", help="run the rollout controller (leader-elected loop)")
    p.add_argument("--once", action="store_true", help="one tick, print what it did, exit")
    _target(p, "tara.rollout.controller_server:controller_command")

    p = sub.add_parser("triggers", help="check the rules that decide when to fine-tune")
    tr_sub = p.add_subparsers(dest="triggers_command", required=True, metavar="ACTION")
    tp = tr_sub.add_parser("check", help="every trigger: value vs threshold, and what would run")
    tp.add_argument("--json", action="store_true", help="print JSON for scripts")
    tp.add_argument(
        "--since",
        default=None,
        help="count high-quality data from here, not each scope's last run (ISO or unix)",
    )
    tp.add_argument("--at", default=None, help="evaluate as of this time (default: now)")
    _target(tp, "tara.triggers.cli:check_command")

    p = sub.add_parser("simulate", help="simulate rollouts to measure the canary statistics")
    p.add_argument(
        "--scenario",
        default="all",
        choices=["all", "aa", "errors", "ratings", "latency", "better"],
        help="built-in scenario (default: all)",
    )
    p.add_argument("--runs", type=int, default=200, help="rollouts per scenario (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--traffic", type=float, default=None, help="segment requests per hour")
    p.add_argument("--error-rate", type=float, default=None, help="canary error rate (0..1)")
    p.add_argument("--rating-delta", type=float, default=None, help="canary mean rating shift")
    p.add_argument("--latency-factor", type=float, default=None, help="canary latency multiple")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _target(p, "tara.rollout.simulate:simulate_command")

    p = sub.add_parser(
        "demo", help="watch a bad canary rolled back and a good one promoted (no setup needed)"
    )
    p.add_argument(
        "--scenario",
        default="all",
        choices=["bad-canary", "good-canary", "all"],
        help="what to roll out (default: all = bad-canary, then good-canary)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--json", action="store_true", help="print only the summary as JSON")
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        help="HTML report path (default: tara-demo-report.html here, else in the temp dir)",
    )
    p.add_argument("--no-live", action="store_true", help="print decisions, not the live view")
    p.add_argument(
        "--pace",
        default="real",
        choices=["real", "quick"],
        help="real: 10/25/50%% stages, ~1 min (default); quick: compressed for CI, ~20 s",
    )
    _target(p, "tara.demo.command:demo_command")

    p = sub.add_parser("rollout", help="start and steer staged rollouts (admin API)")
    ro_sub = p.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    ro_actions = [
        ("status", "list rollouts, or show one with live canary-vs-stable numbers"),
        ("start", "start a rollout of a candidate model on a track"),
        ("promote", "move to the next stage now (after the last: make it stable)"),
        ("pause", "stop advancing (the canary keeps its share)"),
        ("resume", "continue a paused rollout"),
        ("rollback", "send everyone back to stable and end the rollout"),
        ("abort", "end the rollout without a verdict"),
    ]
    for name, help_text in ro_actions:
        rp = ro_sub.add_parser(name, help=help_text)
        rp.add_argument("--url", default=None, help="gateway URL (default: server.host:port)")
        rp.add_argument("--json", action="store_true", help="print the API's JSON")
        if name == "status":
            rp.add_argument("id", nargs="?", default=None, help="rollout id (default: list)")
            rp.add_argument("--active", action="store_true", help="only unfinished rollouts")
        elif name == "start":
            rp.add_argument("track", help="the track (what clients name in 'model')")
            rp.add_argument("--candidate", required=True, help="the fine-tuned model")
            rp.add_argument("--subject", default=None, help="only this subject")
            rp.add_argument("--language", default=None, help="only this language")
        else:
            rp.add_argument("id", help="rollout id")
            rp.add_argument("--reason", default="", help="why (kept in the rollout's history)")
        _target(rp, "tara.rollout.rollout_cli:rollout_command")

    return parser


def _resolve(target: str) -> Command:
    module_name, _, func_name = target.partition(":")
    func: Command = getattr(importlib.import_module(module_name), func_name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tara`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"tara: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = _resolve(args._target)
    try:
        return command(args, settings)
    except KeyboardInterrupt:
        return 130


def run_in_loop(coro: Any) -> None:
    """Run a coroutine on uvloop when available (falls back to asyncio)."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(coro)
    else:
        uvloop.run(coro)
