"""The PREPARE phase: interactions in, a validated, split chat-format dataset out.

``extract → screen → spool`` runs in one streaming pass over any
``AsyncIterable[Interaction]`` (the interaction log's ``iter_interactions``,
a JSONL export, a test generator); ``resolve duplicates → split → write``
runs once the pass is over, because each needs the whole of a combination:
which of a group of duplicates is best rated, how many examples each
combination keeps (``min_interactions``, the exact quotas), which examples
form one leakage cluster. Rather than reading the log twice (twice the
database load, and a growing log can change between the passes), examples
that pass the stateless rules are spooled to disk with their duplicate keys
(see :mod:`tara.finetune.dataset`). Memory holds 19 bytes per spooled
example (combination, rating, cluster key, spool offset); resolving
duplicates sorts one column of keys at a time (8 bytes an example).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from array import array
from collections import Counter, deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from tara.finetune.config import FinetuneSettings
from tara.finetune.dataset import NOWHERE, Spool, WrittenFile, finalize
from tara.finetune.dedup import Candidates, candidate_clusters, keep_best
from tara.finetune.extract import Candidate, ExtractFilter, extract
from tara.finetune.report import build_manifest, render_report, write_outputs
from tara.finetune.rules_cultural import Lexicon
from tara.finetune.screening import BATCH, Result, ScreeningPool, as_row
from tara.finetune.split import fractions_of, split_group
from tara.finetune.stats import (
    BELOW_MIN_INTERACTIONS,
    INCLUDED,
    TOO_SMALL_DROPPED,
    TOO_SMALL_IN_TRAIN,
    CombinationStats,
)
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


class _Intake:
    """Candidates in log order → screening pool → duplicate memory, counts and spool."""

    def __init__(self, pool: ScreeningPool, spool: Spool) -> None:
        self.pool, self.spool = pool, spool
        self.combos: dict[tuple[str, str], CombinationStats] = {}
        self.combo_of = array("H")
        self.rating = array("B")
        self.cluster = array("Q")
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
        # and the example indexes depend on that order.
        combos, spool = self.combos, self.spool
        for c, (rule, redactions, exact, bands, cluster, line) in zip(
            candidates, results, strict=True
        ):
            stats = combos.get(c.combination)
            if stats is None:
                stats = combos[c.combination] = CombinationStats(c.language, c.subject, len(combos))
            stats.extracted += 1
            if rule is not None:
                stats.dropped[rule] += 1
                continue
            if redactions:
                stats.redacted_examples += 1
                stats.redactions.update(redactions)
            spool.write(line, (exact, *bands))
            self.combo_of.append(stats.index)
            self.rating.append(c.rating)
            self.cluster.append(cluster)


def _words(line: bytes) -> list[bytes]:
    """The words duplicates are judged on, from a spooled example line."""
    messages = orjson.loads(line)["messages"]
    folded = f"{messages[1]['content'].casefold()}\n\x1e\n{messages[2]['content'].casefold()}"
    return folded.encode("utf-8", "surrogatepass").split()


def _resolve_duplicates(intake: _Intake, threshold: float) -> tuple[np.ndarray, dict[str, int]]:
    """Drop the confirmed duplicates (counted per combination); the survivors' mask and
    the candidates' counts."""
    spool = intake.spool
    alive = np.ones(len(intake.combo_of), dtype=bool)
    found = candidate_clusters(spool.keys_path, spool.width)
    by_index = {s.index: s for s in intake.combos.values()}
    try:
        _decide_groups(intake, found, threshold, alive, by_index)
    finally:
        spool.close_reader()
    examined = sum(len(g) for g in found.clusters)
    return alive, {"candidate_clusters": len(found.clusters), "candidate_examples": examined}


def _decide_groups(
    intake: _Intake,
    found: Candidates,
    threshold: float,
    alive: np.ndarray,
    by_index: dict[int, CombinationStats],
) -> None:
    spool = intake.spool
    for group in found.clusters:
        words = {m: _words(line) for m, line in spool.read(group).items()}
        verdicts = keep_best(
            group, words.__getitem__, intake.rating.__getitem__, threshold, found.keys.__getitem__
        )
        for m, rule in verdicts.items():
            if rule is not None:
                alive[m] = False
                by_index[intake.combo_of[m]].dropped[rule] += 1


def _plan(
    intake: _Intake, alive: np.ndarray, settings: FinetuneSettings
) -> tuple[list[CombinationStats], np.ndarray]:
    """Split every combination exactly and decide its fate; each example's destination."""
    combo_of = np.frombuffer(intake.combo_of, dtype=np.uint16)
    cluster_of = np.frombuffer(intake.cluster, dtype=np.uint64)
    destinations = np.full(len(combo_of), NOWHERE, dtype=np.uint8)
    fractions = fractions_of(settings.split)
    ordered = sorted(intake.combos.values(), key=lambda s: (s.language, s.subject))
    for stats in ordered:
        members = np.flatnonzero((combo_of == stats.index) & alive)
        found, inverse, sizes = np.unique(
            cluster_of[members], return_inverse=True, return_counts=True
        )
        plan = split_group(sizes.tolist(), found.tolist(), fractions)
        stats.plan = plan
        stats.kept = dict(zip(("train", "validation", "test"), plan.counts, strict=True))
        splits = np.asarray(plan.splits, dtype=np.uint8)[inverse] if members.size else members
        if stats.extracted < settings.min_interactions:
            stats.status = BELOW_MIN_INTERACTIONS
        elif plan.too_small and settings.split.small_combinations == "train":
            stats.status = TOO_SMALL_IN_TRAIN
            stats.written["train"] = int(members.size)
            destinations[members] = 0
        elif plan.too_small:
            stats.status = TOO_SMALL_DROPPED
        else:
            stats.status = INCLUDED
            stats.written = dict(stats.kept)
            destinations[members] = splits
    return ordered, destinations


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
    validation = settings.validation
    extraction: Counter[str] = Counter()
    read = 0
    with tempfile.TemporaryDirectory(prefix=".spool-", dir=output_dir) as scratch:
        spool = Spool(Path(scratch), 1 + validation.near_duplicate_bands)
        intake = _Intake(ScreeningPool(settings, lexicon, settings.workers), spool)
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
        alive, candidates = await asyncio.to_thread(
            _resolve_duplicates, intake, validation.near_duplicate_threshold
        )
        ordered, destinations = _plan(intake, alive, settings)
        files = await asyncio.to_thread(finalize, spool, destinations, output_dir)
    manifest = build_manifest(
        settings=settings,
        where=where,
        read=read,
        extraction=extraction,
        combinations=ordered,
        files=files,
        dedup=candidates,
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
