"""``tara sandbox``: the sandbox's subcommand (options here, the handler in :mod:`.server`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tara.commands import handled_by

if TYPE_CHECKING:
    from tara.commands import Subparsers


def add_sandbox(sub: Subparsers) -> None:
    """``tara sandbox [--host H] [--port P] [--seed N] [--models FILE]``."""
    p = sub.add_parser("sandbox", help="run the local OpenAI-compatible upstream")
    p.add_argument("--host", default="127.0.0.1", help="listen address")
    p.add_argument("--port", type=int, default=8081, help="listen port (default 8081)")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible behaviour")
    p.add_argument(
        "--models", type=Path, default=None, help="TOML/YAML file with per-model behaviour"
    )
    handled_by(p, "tara.sandbox.server:sandbox_command")
