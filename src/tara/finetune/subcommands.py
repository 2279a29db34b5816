"""``tara finetune``: dataset, training and evaluation subcommands (handlers in ``*_cli.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tara.commands import handled_by

if TYPE_CHECKING:
    from tara.commands import Subparsers


def add_finetune(sub: Subparsers) -> None:
    """``tara finetune {prepare,start,status,evaluate,runs,show,approve,cancel}``."""
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
    fp.add_argument("--json", action="store_true", help="print the manifest as JSON")
    handled_by(fp, "tara.finetune.prepare_cli:prepare_command")
    for name, help_text in (
        ("start", "upload a prepared dataset and start its fine-tuning job (never twice)"),
        ("status", "show the fine-tuning job of a dataset (--follow: until it ends)"),
        ("cancel", "stop a run of the loop (RUN), or the fine-tuning job of a dataset"),
    ):
        ft = ft_sub.add_parser(name, help=help_text)
        ft.add_argument(
            "dataset",
            nargs="?",
            type=Path,
            default=None,
            help="dataset dir (default finetune.output_dir)" + (" or run id" * (name == "cancel")),
        )
        ft.add_argument("--json", action="store_true", help="print JSON for scripts")
        if name == "start":
            ft.add_argument("--force", action="store_true", help="retry a failed/cancelled run")
        else:
            ft.add_argument("--job", default=None, help="a job id instead of the dataset's run")
        if name == "status":
            ft.add_argument("--follow", action="store_true", help="watch until the job ends")
        if name == "cancel":
            ft.add_argument("--reason", default="", help="why (kept on the run)")
            ft.add_argument("--url", default=None, help="gateway URL (default: server.host:port)")
            handled_by(ft, "tara.retrain.runs_cli:cancel_command")
        else:
            handled_by(ft, f"tara.finetune.train_cli:{name}_command")
    for name, help_text in (
        ("runs", "list the fine-tuning runs the controller started (admin API)"),
        ("show", "show one run: its triggers, steps, gate and canary"),
        ("approve", "let an evaluated run's model go to its canary (no auto_deploy)"),
    ):
        fr = ft_sub.add_parser(name, help=help_text)
        if name == "runs":
            fr.add_argument("--open", action="store_true", help="only runs still in progress")
        else:
            fr.add_argument("run", help="run id (ft-...)")
        fr.add_argument("--url", default=None, help="gateway URL (default: server.host:port)")
        fr.add_argument("--json", action="store_true", help="print the API's JSON")
        handled_by(fr, f"tara.retrain.runs_cli:{name}_command")
    fe = ft_sub.add_parser("evaluate", help="gate a fine-tuned candidate against stable offline")
    fe.add_argument("--dataset", type=Path, required=True, help="dataset dir (with test.jsonl)")
    fe.add_argument("--candidate", required=True, help="candidate model id")
    fe.add_argument("--stable", default=None, help="stable model (default: the track's)")
    fe.add_argument("--limit", type=int, default=None, help="evaluate the first N examples")
    fe.add_argument("--json", action="store_true", help="print the report as JSON")
    handled_by(fe, "tara.finetune.eval_cli:evaluate_command")
