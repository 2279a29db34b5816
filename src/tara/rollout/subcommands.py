"""``tara controller``, ``tara simulate`` and ``tara rollout``: the rollout package's subcommands.

Options here; handlers in :mod:`.controller_server`, :mod:`.simulate` and
:mod:`.rollout_cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tara.commands import handled_by

if TYPE_CHECKING:
    from tara.commands import Subparsers

ROLLOUT_ACTIONS = (
    ("status", "list rollouts, or show one with live canary-vs-stable numbers"),
    ("start", "start a rollout of a candidate model on a track"),
    ("promote", "move to the next stage now (after the last: make it stable)"),
    ("pause", "stop advancing (the canary keeps its share)"),
    ("resume", "continue a paused rollout"),
    ("rollback", "send everyone back to stable and end the rollout"),
    ("abort", "end the rollout without a verdict"),
)
"""``tara rollout`` actions and their help, in ``--help`` order."""


def add_controller(sub: Subparsers) -> None:
    """``tara controller [--once]``."""
    p = sub.add_parser("controller", help="run the rollout controller (leader-elected loop)")
    p.add_argument("--once", action="store_true", help="one tick, print what it did, exit")
    handled_by(p, "tara.rollout.controller_server:controller_command")


def add_simulate(sub: Subparsers) -> None:
    """``tara simulate [--scenario S] [--runs N] ...``."""
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
    handled_by(p, "tara.rollout.simulate:simulate_command")


def add_rollout(sub: Subparsers) -> None:
    """``tara rollout {status,start,promote,pause,resume,rollback,abort}``."""
    p = sub.add_parser("rollout", help="start and steer staged rollouts (admin API)")
    ro_sub = p.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    for name, help_text in ROLLOUT_ACTIONS:
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
        handled_by(rp, "tara.rollout.rollout_cli:rollout_command")
