"""Screening batches of candidates in order, inline or in a worker process.

Every rule but the duplicate check is a pure function of one example, and
so are its duplicate keys, its leakage-cluster key and its JSONL line: that
is most of a build's CPU. :class:`ScreeningPool` runs it for batches of candidates in
``workers`` spawned processes while the event loop reads the log, and
hands results back in submission order, so the (sequential) duplicate
memory sees examples in log order and a build is byte-for-byte the same
with or without workers. Small builds never pay for starting a process:
the pool stays inline until the first full batch, and with ``workers=0``.
At most ``IN_FLIGHT`` batches per worker are outstanding, so memory stays flat.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from tara.finetune.clusters import cluster_key, seed_key
from tara.finetune.config import FinetuneSettings
from tara.finetune.dataset import example_line
from tara.finetune.extract import Candidate
from tara.finetune.prompts import PromptTable
from tara.finetune.rules_cultural import Lexicon
from tara.finetune.validate import Screener, combination_id

BATCH = 2048
"""Candidates per batch: large enough that pickling is cheap per example."""
IN_FLIGHT = 3
"""Batches submitted per worker and not yet handed back."""

Row = tuple[str, str, str, str, str, int | None, tuple[str, ...], str | None]
"""A candidate as plain fields (cheaper to pickle than the dataclass); the last is the
student."""
Result = tuple[str | None, tuple[str, ...], int, tuple[int, ...], int, bytes]
"""``(rule, redactions, exact key, band keys, cluster key, JSONL line)`` (see
:func:`tara.finetune.clusters.cluster_key`); a dropped example has its rule and empty rest."""


def as_row(c: Candidate) -> Row:
    """The candidate's fields, in :class:`Candidate`'s order (the rating stays behind)."""
    return (
        c.request_id,
        c.language,
        c.subject,
        c.question,
        c.answer,
        c.answer_tokens,
        c.tags,
        c.student,
    )


class BatchScreener:
    """The pure part of validation plus cluster keys and serialisation, for one build."""

    def __init__(self, settings: FinetuneSettings, lexicon: Lexicon | None) -> None:
        self._screener = Screener(settings.validation, lexicon)
        self._key = seed_key(settings.split.seed)
        self._prompts = PromptTable(settings.prompts)
        self._combos: dict[tuple[str, str], bytes] = {}

    def run(self, rows: Sequence[Row]) -> list[Result]:
        """Screen ``rows``; one result per row, in order."""
        screen, prompt, key, combos = (
            self._screener.screen,
            self._prompts.get,
            self._key,
            self._combos,
        )
        out: list[Result] = []
        append = out.append
        for request_id, language, subject, question, answer, tokens, tags, student in rows:
            asked = question
            rule, question, answer, redactions, exact, bands = screen(
                language, subject, question, answer, tokens, tags
            )
            if rule is not None:
                append((rule, (), 0, (), 0, b""))
                continue
            line = example_line(prompt(subject, language), question, answer)
            combo = combos.get((language, subject))
            if combo is None:
                combo = combos[(language, subject)] = combination_id(language, subject)
            cluster = cluster_key(key, combo, student, asked, request_id)
            append((None, redactions, exact, bands, cluster, line))
        return out


_WORKER: list[BatchScreener] = []


def _init_worker(settings: FinetuneSettings, lexicon: Lexicon | None) -> None:
    _WORKER.append(BatchScreener(settings, lexicon))


def _run_in_worker(rows: list[Row]) -> list[Result]:
    return _WORKER[0].run(rows)


class ScreeningPool:
    """Submits batches and returns their results in submission order."""

    def __init__(self, settings: FinetuneSettings, lexicon: Lexicon | None, workers: int) -> None:
        self._settings, self._lexicon, self._workers = settings, lexicon, workers
        self._inline = BatchScreener(settings, lexicon)
        self._executor: ProcessPoolExecutor | None = None
        self._pending: deque[asyncio.Future[list[Result]]] = deque()

    def submit(self, rows: list[Row]) -> None:
        """Queue a batch; full batches go to the workers (started on first use)."""
        if self._workers > 0 and len(rows) >= BATCH and self._executor is None:
            self._executor = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._settings, self._lexicon),
            )
        if self._executor is not None:
            future = asyncio.wrap_future(self._executor.submit(_run_in_worker, rows))
        else:
            future = asyncio.get_running_loop().create_future()
            future.set_result(self._inline.run(rows))
        self._pending.append(future)

    @property
    def full(self) -> bool:
        """Whether the caller should take a result before submitting more."""
        return len(self._pending) > IN_FLIGHT * max(1, self._workers)

    @property
    def pending(self) -> int:
        """Batches submitted and not yet taken."""
        return len(self._pending)

    async def next_result(self) -> list[Result]:
        """The oldest outstanding batch's results."""
        return await self._pending.popleft()

    def close(self) -> None:
        """Stop the workers (outstanding batches are abandoned)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
