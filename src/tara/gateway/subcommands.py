"""``tara serve``: the gateway's subcommand (options here, the handler in :mod:`.server`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tara.commands import handled_by

if TYPE_CHECKING:
    from tara.commands import Subparsers


def add_serve(sub: Subparsers) -> None:
    """``tara serve [--host H] [--port P] [--insecure-dev-keys]``."""
    p = sub.add_parser("serve", help="run the OpenAI-compatible gateway")
    p.add_argument("--host", default=None, help="listen address (default: server.host)")
    p.add_argument("--port", type=int, default=None, help="listen port (default: server.port)")
    p.add_argument(
        "--insecure-dev-keys",
        action="store_true",
        help="start with the built-in development keys even beyond loopback or with "
        "Redis/PostgreSQL (refused otherwise)",
    )
    handled_by(p, "tara.gateway.server:serve_command")
