"""``tara controller``, ``tara simulate`` and ``tara rollout``: the rollout package's subcommands.

Options here; handlers in :mod:`.controller_server`, :mod:`.simulate` and
:mod:`.rollout_cli`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

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


SCENARIOS = (
    "aa", "errors", "errors-past", "errors-inside", "ratings", "ratings-past", "ratings-inside",
    "latency", "latency-past", "latency-inside", "better", "outage", "srm", "rating-rate",
    "degrade",
)  # fmt: skip
"""``tara simulate --scenario`` names (:data:`tara.rollout.simulate.SCENARIOS`' keys)."""


def _outage(text: str) -> Any:
    from tara.rollout.scenarios import parse_outage

    return parse_outage(text)


def _stable_options(parser: argparse.ArgumentParser) -> None:
    """Stable's behaviour in ``tara simulate`` (the canary is described relative to it)."""
    parser.add_argument("--stable-error-rate", type=float, default=None, help="default 0.01")
    parser.add_argument(
        "--stable-latency", type=float, default=None, help="median seconds (default 2)"
    )
    parser.add_argument("--rating-mean", type=float, default=None, help="stable's (default 4.0)")
    parser.add_argument(
        "--rating-spread", type=float, default=None, help="spread of ratings (default 1.0)"
    )
    parser.add_argument(
        "--rating-rate", type=float, default=None, help="share of answers rated (default 0.3)"
    )
    parser.add_argument("--students", type=int, default=None, help="segment students (5000)")


def add_simulate(sub: Subparsers) -> None:
    """``tara simulate [--scenario S] [--runs N] ...`` and ``tara simulate plan ...``."""
    p = sub.add_parser("simulate", help="simulate rollouts to measure the canary statistics")
    p.add_argument(
        "--scenario",
        default="all",
        choices=["all", *SCENARIOS],
        help="built-in scenario (default: all)",
    )
    p.add_argument("--runs", type=int, default=200, help="rollouts per scenario (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--traffic", type=float, default=None, help="segment requests per hour")
    p.add_argument("--error-rate", type=float, default=None, help="canary error rate (0..1)")
    p.add_argument(
        "--rating-delta", type=float, default=None, help="canary mean rating minus stable's"
    )
    p.add_argument(
        "--latency-factor", type=float, default=None, help="canary latency / stable latency"
    )
    p.add_argument(
        "--degrade-at", type=float, default=None, help="hours before the canary turns bad"
    )
    p.add_argument(
        "--outage",
        default=None,
        metavar="HOUR,HOURS,RATE",
        type=_outage,
        help="both variants fail RATE more for HOURS from HOUR (e.g. 24,2,0.3)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _stable_options(p)
    handled_by(p, "tara.rollout.simulate:simulate_command")
    plan_sub = p.add_subparsers(dest="simulate_command", metavar="ACTION")
    pp = plan_sub.add_parser(
        "plan", help="how long each stage takes and what it catches at this traffic"
    )
    pp.add_argument("--requests-per-hour", type=float, required=True, help="segment traffic")
    pp.add_argument("--ratings-per-hour", type=float, required=True, help="segment ratings")
    pp.add_argument("--runs", type=int, default=200, help="rollouts per effect size (200)")
    pp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    pp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _stable_options(pp)
    handled_by(pp, "tara.rollout.forecast:plan_command")


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
