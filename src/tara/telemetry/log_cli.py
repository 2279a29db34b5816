"""``tara log ...``: maintenance of the interaction log from the command line.

Maintenance never creates a log: purging a SQLite file that does not exist
is an error (a mistyped path would otherwise "succeed" on a new, empty log).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path

from tara.settings import Settings
from tara.telemetry.log_backends import open_log

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_age(text: str) -> float:
    """Seconds in an age like ``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` (bare number: days)."""
    match = _AGE.match(text)
    if match is None:
        msg = f"invalid age {text!r}: use a number with s, m, h, d or w (e.g. 30d)"
        raise ValueError(msg)
    number, unit = match.groups()
    return float(number) * _UNITS[unit or "d"]


def sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file the settings name as the log, or ``None`` for PostgreSQL."""
    url = settings.database_url
    if url is None:
        return settings.telemetry.sqlite_path
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


async def _purge(settings: Settings, cutoff: float) -> int:
    log = open_log(settings.database_url, settings.telemetry)
    try:
        await log.migrate()
        return await log.purge(cutoff)
    finally:
        await log.aclose()


def purge_command(args: argparse.Namespace, settings: Settings) -> int:
    """Delete interactions older than ``--older-than`` (default: ``telemetry.retention_days``)."""
    spec = args.older_than or f"{settings.telemetry.retention_days:g}d"
    try:
        age = parse_age(spec)
    except ValueError as exc:
        print(f"tara log purge: {exc}", file=sys.stderr)
        return 2
    path = sqlite_file(settings)
    if path is not None and not path.is_file():
        print(
            f"tara log purge: the interaction log {path} does not exist; set "
            "TARA_DATABASE_URL or TARA_TELEMETRY__SQLITE_PATH to the log to purge",
            file=sys.stderr,
        )
        return 1
    cutoff = time.time() - age
    try:
        deleted = asyncio.run(_purge(settings, cutoff))
    except Exception as exc:
        print(f"tara log purge: cannot purge the interaction log: {exc}", file=sys.stderr)
        return 1
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cutoff))
    print(f"purged {deleted} interactions created before {stamp} (older than {spec})")
    return 0
