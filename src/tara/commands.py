"""How a package adds its ``tara`` subcommands: argparse definitions, handlers imported late.

Each package declares its subcommands in its own ``subcommands.py`` (options
next to the package's code); :mod:`tara.cli` collects them in the order
``tara --help`` shows. A subcommand names its handler as ``module:function``,
imported only when the command runs, so ``tara sandbox`` does not pay for the
controller's imports. Handlers take ``(args, settings)`` and return an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from tara.settings import Settings

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """What ``add_subparsers`` returns: where a package adds its subcommand."""

Command = Callable[[argparse.Namespace, "Settings"], int]
"""A subcommand's handler: parsed arguments and settings in, exit code out."""

Register = Callable[["Subparsers"], None]
"""Adds one subcommand (with its actions) to ``tara``'s subparsers."""


def handled_by(parser: argparse.ArgumentParser, target: str) -> None:
    """Make ``target`` (``module:function``) the handler of ``parser``; add ``--config``."""
    parser.set_defaults(_target=target)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML or YAML config file (TARA_* variables override it)",
    )
