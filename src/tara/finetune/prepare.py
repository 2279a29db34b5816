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
from collections import Counter, deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path

from tara.finetune.config import FinetuneSettings
from tara.finetune.dataset import Spool, WrittenFile, finalize
from tara.finetune.extract import Candidate, ExtractFilter, extract
from tara.finetune.report import build_manifest, render_report, write_outputs
from tara.finetune.rules_cultural import Lexicon
from tara.finetune.screening import BATCH, Result, ScreeningPool, as_row
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


class _Intake:
    """Candidates in log order → screening pool → duplicate memory, counts and spool."""

    def __init__(self, pool: ScreeningPool, validator: Validator, spool: Spool) -> None:
        self.pool, self._dedup, self._spool = pool, validator.dedup, spool
        self.combos: dict[tuple[str, str], CombinationStats] = {}
        self._batch: list[Candidate] = []
        self._submitted: deque[list[Candidate]] = deque()

    async def add(self, candidate: Candidate) -> None:
        """Queue one candidate; screen a full batch, taking results when enough are out."""
        self._batch.append(candidate)
        if len(self._batch) >= BATCH:
            await self._flush()

    async def drain(self) -> None:
        """Screen what is queued and apply every outstanding result."""
        if self._batch:
            await self._flush()
        while self.pool.pending:
            self._apply(self._submitted.popleft(), await self.pool.next_result())

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._submitted.append(batch)
        self.pool.submit([as_row(c) for c in batch])
        while self.pool.full:
            self._apply(self._submitted.popleft(), await self.pool.next_result())

    def _apply(self, candidates: list[Candidate], results: list[Result]) -> None:
        # In log order whatever process screened the batch: the duplicate memory
        # and the combination indexes depend on that order.
        combos, dedup, spool = self.combos, self._dedup, self._spool
        for c, (rule, redactions, exact, bands, split, line) in zip(
            candidates, results, strict=True
        ):
            stats = combos.get(c.combination)
            if stats is None:
                stats = combos[c.combination] = CombinationStats(
                    c.language, c.subject, b"%d\t" % len(combos)
                )
            stats.extracted += 1
            if rule is None:
                rule = dedup.check_keys(exact, bands)
            if rule is not None:
                stats.dropped[rule] += 1
                continue
            if redactions:
                stats.redacted_examples += 1
                stats.redactions.update(redactions)
            stats.kept[split] += 1
            spool.write(split, stats.tag, line)


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
    extraction: Counter[str] = Counter()
    read = 0
    with tempfile.TemporaryDirectory(prefix=".spool-", dir=output_dir) as scratch:
        spool = Spool(Path(scratch))
        intake = _Intake(ScreeningPool(settings, lexicon, settings.workers), validator, spool)
        combos = intake.combos
        try:
            async for ix in source:
                read += 1
                if read % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                candidate = extract(ix, where)
                if isinstance(candidate, str):
                    extraction[candidate] += 1
                    continue
                await intake.add(candidate)
            await intake.drain()
        finally:
            spool.close()
            await asyncio.to_thread(intake.pool.close)
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
