"""The ``tara`` command: the composition root that turns settings into running parts.

Each package declares its subcommands next to its code (``subcommands.py``,
see :mod:`tara.commands`); this module collects them in ``--help`` order,
loads the settings, and runs the chosen handler, imported only then.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tara.commands import Command, Register
from tara.demo.subcommands import add_demo
from tara.finetune.subcommands import add_finetune
from tara.gateway.subcommands import add_serve
from tara.rollout.subcommands import add_controller, add_rollout, add_simulate
from tara.sandbox.subcommands import add_sandbox
from tara.settings import ConfigError, load_settings
from tara.telemetry.subcommands import add_log
from tara.triggers.subcommands import add_triggers

SUBCOMMANDS: tuple[Register, ...] = (
    add_serve,
    add_sandbox,
    add_log,
    add_finetune,
    add_controller,
    add_triggers,
    add_simulate,
    add_demo,
    add_rollout,
)
"""Every subcommand, in the order ``tara --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="tara", description="Tara gateway: ship fine-tuned LLMs safely."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
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
