"""``tara demo``: the demo's subcommand (the handler in :mod:`.command`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tara.commands import handled_by

if TYPE_CHECKING:
    from tara.commands import Subparsers


def add_demo(sub: Subparsers) -> None:
    """``tara demo [--scenario S] [--pace P] ...``."""
    p = sub.add_parser(
        "demo",
        help="watch canaries rolled back and promoted, and the loop retrain a weak segment",
    )
    p.add_argument(
        "--scenario",
        default="all",
        choices=["bad-canary", "good-canary", "full-loop", "all"],
        help="what to run (default: all = bad-canary, good-canary, then full-loop)",
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
    handled_by(p, "tara.demo.command:demo_command")
