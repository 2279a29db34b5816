"""``tara triggers``: the trigger subcommands (handlers in :mod:`.cli`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tara.commands import handled_by

if TYPE_CHECKING:
    from tara.commands import Subparsers


def add_triggers(sub: Subparsers) -> None:
    """``tara triggers check [--json] [--since T] [--at T]``."""
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
    handled_by(tp, "tara.triggers.cli:check_command")
