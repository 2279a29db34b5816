"""``tara finetune prepare``: build a dataset from the interaction log or a JSONL export.

Flags override ``Settings.finetune`` for this run only. The log is asked for
rated interactions in the filter's range (``iter_interactions`` filters in
its query); the pipeline applies the same filter again, so an export that
holds everything works too.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson

from tara.finetune.config import FinetuneSettings
from tara.finetune.extract import ExtractFilter
from tara.finetune.prepare import PrepareResult, prepare
from tara.finetune.report import combination_rows
from tara.finetune.rules_cultural import LexiconError
from tara.settings import Settings
from tara.telemetry.interactions import Interaction

_FIELDS = frozenset(f.name for f in fields(Interaction))


def parse_time(text: str) -> float:
    """Unix seconds from ``1717200000``, ``2024-06-01`` or ``2024-06-01T10:00:00+05:30``.

    A date or time without a zone is taken as UTC.
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        msg = f"invalid time {text!r}: use unix seconds or an ISO date such as 2024-06-01"
        raise ValueError(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def interaction_from_json(data: dict[str, Any]) -> Interaction:
    """An :class:`Interaction` from one exported JSON object (unknown keys ignored)."""
    return Interaction(**{k: v for k, v in data.items() if k in _FIELDS})


async def read_jsonl(path: Path) -> AsyncIterator[Interaction]:
    """Stream interactions from a JSONL export, one object per line."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
                yield interaction_from_json(data)
            except (orjson.JSONDecodeError, TypeError) as exc:
                msg = f"{path}:{number}: not an interaction record: {exc}"
                raise ValueError(msg) from exc


async def _from_log(settings: Settings, where: ExtractFilter) -> AsyncIterator[Interaction]:
    from tara.telemetry.log import InteractionFilter
    from tara.telemetry.log_backends import open_log

    log = open_log(settings.database_url, settings.telemetry)
    try:
        await log.migrate()
        query = InteractionFilter(
            since=where.since,
            until=where.until,
            track=where.track,
            segment=where.segment,
            min_rating=where.min_rating,
            rated_only=True,
        )
        async for ix in log.iter_interactions(query):
            yield ix
    finally:
        await log.aclose()


def run_settings(args: argparse.Namespace, base: FinetuneSettings) -> FinetuneSettings:
    """The finetune settings with this run's flags applied (validated again)."""
    data = base.model_dump()
    if args.min_rating is not None:
        data["min_rating"] = args.min_rating
    if args.min_interactions is not None:
        data["min_interactions"] = args.min_interactions
    if args.output is not None:
        data["output_dir"] = args.output
    if args.seed is not None:
        data["split"]["seed"] = args.seed
    return FinetuneSettings.model_validate(data)


def text_table(header: list[str], rows: list[list[Any]]) -> str:
    """Rows under a header in aligned columns (text left, numbers right)."""
    cells = [header, *[[str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join(line(r) for r in cells)


def _summary(result: PrepareResult) -> str:
    totals = result.manifest["totals"]
    assert isinstance(totals, dict)
    written = ", ".join(f"{name} {f.examples}" for name, f in result.files.items())
    return (
        f"read {result.read} interactions, extracted {totals['extracted']}, "
        f"kept {totals['kept']}; wrote {written}\n\n"
        f"{text_table(*combination_rows(result.manifest))}\n\n"
        f"manifest: {result.manifest_path}\nreport:   {result.report_path}"
    )


def prepare_command(args: argparse.Namespace, settings: Settings) -> int:
    """Build the dataset; exit 0 on success, 2 for bad arguments, 1 if the build failed."""
    try:
        finetune = run_settings(args, settings.finetune)
        where = ExtractFilter(
            min_rating=finetune.min_rating,
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
            track=args.track,
            segment=args.segment,
        )
    except ValueError as exc:
        print(f"tara finetune prepare: {exc}", file=sys.stderr)
        return 2
    source = read_jsonl(args.from_jsonl) if args.from_jsonl else _from_log(settings, where)
    try:
        result = asyncio.run(prepare(source, finetune, finetune.output_dir, where))
    except (LexiconError, ValueError, OSError) as exc:
        print(f"tara finetune prepare: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result.manifest, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(_summary(result))
    return 0
