"""``tara log``: the interaction log's subcommand (handlers in :mod:`.log_cli`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tara.commands import handled_by

if TYPE_CHECKING:
    from tara.commands import Subparsers


def add_log(sub: Subparsers) -> None:
    """``tara log purge [--older-than AGE]``."""
    p = sub.add_parser("log", help="maintain the interaction log")
    log_sub = p.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    lp = log_sub.add_parser("purge", help="delete interactions past their retention")
    lp.add_argument(
        "--older-than",
        default=None,
        help="age such as 30d, 12h, 2w (default: telemetry.retention_days)",
    )
    handled_by(lp, "tara.telemetry.log_cli:purge_command")
