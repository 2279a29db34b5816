"""The PREPARE phase: interactions in, a validated, split chat-format dataset out.

``extract → validate → split → write`` runs in one streaming pass over any
``AsyncIterable[Interaction]`` (the interaction log's ``iter_interactions``,
a JSONL export, a test generator). The ``min_interactions`` rule needs each
combination's total, known only at the end; rather than reading the log
twice (twice the database load, and a growing log can change between the
passes), kept examples are spooled to disk per split and copied into the
final files once the totals are in (see :mod:`tara.finetune.dataset`).
Memory holds a few counters per combination and the fixed-size duplicate
filter, whatever the size of the log.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path

from tara.finetune.config import FinetuneSettings
from tara.finetune.dataset import Spool, WrittenFile, example_line, finalize
from tara.finetune.extract import ExtractFilter, extract
from tara.finetune.prompts import PromptTable
from tara.finetune.report import build_manifest, render_report, write_outputs
from tara.finetune.rules_cultural import Lexicon
from tara.finetune.split import SPLITS, Splitter
from tara.finetune.stats import (
    BELOW_MIN_INTERACTIONS,
    INCLUDED,
    TOO_SMALL_DROPPED,
    TOO_SMALL_IN_TRAIN,
    CombinationStats,
)
from tara.finetune.validate import Validator
from tara.telemetry.interactions import Interaction

_YIELD_EVERY = 2048
"""Examples between two yields to the event loop, so a build never starves other tasks."""


@dataclass(slots=True)
class PrepareResult:
    """What a build did: counts, the files, and where the manifest and report are."""

    read: int
    extraction: Counter[str]
    combinations: list[CombinationStats]
    files: dict[str, WrittenFile]
    manifest_path: Path
    report_path: Path
    manifest: dict[str, object]


def _decide(
    stats: CombinationStats, min_interactions: int, splitter: Splitter, small_policy: str
) -> dict[str, str]:
    """Set the combination's status; return where each of its spooled splits goes."""
    if stats.extracted < min_interactions:
        stats.status = BELOW_MIN_INTERACTIONS
        return {}
    if splitter.too_small(stats.kept):
        if small_policy == "train":
            stats.status = TOO_SMALL_IN_TRAIN
            stats.written["train"] = sum(stats.kept.values())
            return dict.fromkeys(SPLITS, "train")
        stats.status = TOO_SMALL_DROPPED
        return {}
    stats.status = INCLUDED
    stats.written = dict(stats.kept)
    return {s: s for s in SPLITS}


async def prepare(
    source: AsyncIterable[Interaction],
    settings: FinetuneSettings,
    output_dir: Path,
    where: ExtractFilter | None = None,
    *,
    lexicon: Lexicon | None = None,
    clock: Callable[[], float] = time.time,
) -> PrepareResult:
    """Build the dataset from ``source`` into ``output_dir``.

    ``where`` defaults to ``settings.min_rating`` and no time, track or
    segment filter. Writes ``train.jsonl``, ``validation.jsonl``,
    ``test.jsonl``, ``manifest.json`` and ``report.md``.
    """
    where = where or ExtractFilter(min_rating=settings.min_rating)
    started = clock()
    await asyncio.to_thread(output_dir.mkdir, parents=True, exist_ok=True)
    validator = Validator(settings.validation, lexicon)
    splitter = Splitter(settings.split)
    prompts = PromptTable(settings.prompts)
    combos: dict[tuple[str, str], CombinationStats] = {}
    extraction: Counter[str] = Counter()
    read = 0
    with tempfile.TemporaryDirectory(prefix=".spool-", dir=output_dir) as scratch:
        spool = Spool(Path(scratch))
        try:
            async for ix in source:
                read += 1
                if read % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                candidate = extract(ix, where)
                if isinstance(candidate, str):
                    extraction[candidate] += 1
                    continue
                stats = combos.get(candidate.combination)
                if stats is None:
                    stats = combos[candidate.combination] = CombinationStats(
                        candidate.language, candidate.subject, b"%d\t" % len(combos)
                    )
                stats.extracted += 1
                verdict = validator.check(candidate)
                if verdict.rule is not None:
                    stats.dropped[verdict.rule] += 1
                    continue
                if verdict.redactions:
                    stats.redacted_examples += 1
                    stats.redactions.update(verdict.redactions)
                split = splitter.assign(candidate.request_id)
                stats.kept[split] += 1
                system = prompts.get(candidate.subject, candidate.language)
                spool.write(
                    split, stats.tag, example_line(system, verdict.question, verdict.answer)
                )
        finally:
            spool.close()
        ordered = sorted(combos.values(), key=lambda s: (s.language, s.subject))
        destinations = {
            s.tag[:-1]: _decide(
                s, settings.min_interactions, splitter, settings.split.small_combinations
            )
            for s in ordered
        }
        files = await asyncio.to_thread(finalize, spool, destinations, output_dir)
    manifest = build_manifest(
        settings=settings,
        where=where,
        read=read,
        extraction=extraction,
        combinations=ordered,
        files=files,
        dedup_fp_rate=validator.dedup.seen.false_positive_rate(),
        dedup_bytes=validator.dedup.seen.size_bits // 8,
        started=started,
        finished=clock(),
    )
    manifest_path, report_path = write_outputs(output_dir, manifest, render_report(manifest))
    return PrepareResult(
        read=read,
        extraction=extraction,
        combinations=ordered,
        files=files,
        manifest_path=manifest_path,
        report_path=report_path,
        manifest=manifest,
    )
