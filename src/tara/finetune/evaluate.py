"""The EVALUATE phase: the held-out test split through the candidate and stable, scored and gated.

Both models answer every test example through ``Settings.upstream`` with
the official ``openai`` SDK (the gateway is not involved: an offline
evaluation must not move live traffic or routing), concurrently under one
:class:`~tara.finetune.rate_limit.Limiter` shared with the judge's calls.
Each answer is scored (:mod:`tara.finetune.scoring`), by the judge model
when one is configured and by token F1 against the reference when not;
the gate (:mod:`tara.finetune.gate`) compares the aggregates, and a
candidate that passes is registered for rollout (:mod:`tara.finetune.eval_report`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import openai
import orjson

from tara.finetune.config import FinetuneSettings
from tara.finetune.gate import GateResult, decide
from tara.finetune.judge import Judgement, judge_messages, parse_judgement
from tara.finetune.rate_limit import Limiter
from tara.finetune.rules_cultural import Lexicon, load_lexicon
from tara.finetune.rules_quality import estimate_tokens
from tara.finetune.scoring import (
    AnswerScore,
    ModelMetrics,
    aggregate,
    expected_language,
    failed,
    language_ok,
    predicted_satisfaction,
    token_f1,
)
from tara.finetune.train import training_hash

JUDGE_MAX_TOKENS = 300


class DatasetError(ValueError):
    """The dataset directory has no usable test split; the message says why."""


@dataclass(frozen=True, slots=True)
class Example:
    """One held-out test example."""

    system: str
    question: str
    reference: str
    language: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a model sent back for one example (``text`` is ``None`` when it failed)."""

    text: str | None
    latency_ms: float
    tokens: int
    error: str | None = None


@dataclass(slots=True)
class EvaluationResult:
    """Everything the report shows."""

    candidate: ModelMetrics
    stable: ModelMetrics
    gate: GateResult
    method: str
    """``judge:<model>`` or ``lexical``."""
    dataset_dir: Path
    dataset_hash: str
    test_examples: int
    """Examples in the test split (``candidate.samples`` of them were evaluated)."""
    started: float
    finished: float
    errors: dict[str, Counter[str]] = field(default_factory=dict)
    """Per model, failed requests by error type."""
    judge_fallbacks: dict[str, int] = field(default_factory=dict)
    """Per model, answers the judge could not grade (scored lexically instead)."""
    registered: Path | None = None


def _example(line: bytes, number: int, settings: FinetuneSettings) -> Example:
    try:
        messages = orjson.loads(line)["messages"]
        roles = {m["role"]: m["content"] for m in messages}
        system, question, reference = roles["system"], roles["user"], roles["assistant"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        msg = f"test.jsonl line {number}: not a chat example ({exc})"
        raise DatasetError(msg) from exc
    language = expected_language(system, reference, settings.prompts, settings.validation.scripts)
    return Example(system, question, reference, language)


def load_test_set(
    dataset_dir: Path, settings: FinetuneSettings, limit: int | None = None
) -> tuple[list[Example], int]:
    """The first ``limit`` test examples (all when ``None``) and how many the split holds."""
    path = dataset_dir / "test.jsonl"
    try:
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise DatasetError(msg) from exc
    if not lines:
        msg = f"{path} holds no examples"
        raise DatasetError(msg)
    chosen = lines if limit is None else lines[:limit]
    return [_example(line, i, settings) for i, line in enumerate(chosen, 1)], len(lines)


def dataset_hash(dataset_dir: Path) -> str:
    """The training hash of ``finetune start`` (or SHA-256 of ``test.jsonl`` without a manifest)."""
    try:
        manifest = orjson.loads((dataset_dir / "manifest.json").read_bytes())
        return training_hash(manifest["files"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return hashlib.sha256((dataset_dir / "test.jsonl").read_bytes()).hexdigest()


def score_answer(
    example: Example,
    answer: Answer,
    judgement: Judgement | None,
    lexicon: Lexicon,
    settings: FinetuneSettings,
) -> AnswerScore:
    """Score one answer: judged or lexical accuracy, cultural, language, satisfaction."""
    if answer.text is None:
        return failed(answer.latency_ms)
    text = answer.text
    hit = lexicon.find(text.casefold())
    if judgement is not None:
        accuracy, cultural = judgement.accuracy, judgement.cultural
    else:
        accuracy, cultural = token_f1(text, example.reference), 1.0
    if hit is not None:
        cultural = 0.0
    language = 1.0 if language_ok(text, example.language, settings.validation) else 0.0
    return AnswerScore(
        ok=True,
        accuracy=accuracy,
        cultural=cultural,
        language=language,
        latency_ms=answer.latency_ms,
        tokens=answer.tokens,
        satisfaction=predicted_satisfaction(accuracy, cultural, language, answer.latency_ms / 1000),
        lexicon_hit=hit,
        judged=judgement is not None,
    )


class _Runner:
    """Asks one model every example and has the judge grade each answer."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        limiter: Limiter,
        settings: FinetuneSettings,
        lexicon: Lexicon,
        clock: Callable[[], float],
    ) -> None:
        self._client, self._limiter, self._settings = client, limiter, settings
        self._lexicon, self._clock = lexicon, clock
        self.errors: dict[str, Counter[str]] = {}
        self.judge_fallbacks: dict[str, int] = {}

    async def ask(self, model: str, example: Example) -> Answer:
        """The model's answer; a failure after the SDK's retries is data, not an exception."""
        async with self._limiter.slot():
            started = self._clock()
            try:
                reply = await self._client.chat.completions.create(
                    model=model,
                    messages=[
                        {"role": "system", "content": example.system},
                        {"role": "user", "content": example.question},
                    ],
                    max_tokens=self._settings.evaluation.max_answer_tokens,
                )
            except openai.APIError as exc:
                latency = (self._clock() - started) * 1000
                self.errors.setdefault(model, Counter())[type(exc).__name__] += 1
                return Answer(None, latency, 0, type(exc).__name__)
            latency = (self._clock() - started) * 1000
        text = reply.choices[0].message.content if reply.choices else None
        if text is None:
            self.errors.setdefault(model, Counter())["EmptyResponse"] += 1
            return Answer(None, latency, 0, "EmptyResponse")
        usage = reply.usage
        tokens = usage.completion_tokens if usage is not None else estimate_tokens(text)
        return Answer(text, latency, tokens)

    async def judge(self, model: str, example: Example, answer: str) -> Judgement | None:
        """The judge's grades for ``answer``; ``None`` (and counted) if it gave none."""
        judge_model = self._settings.evaluation.judge_model
        if judge_model is None:
            return None
        async with self._limiter.slot():
            try:
                reply = await self._client.chat.completions.create(
                    model=judge_model,
                    messages=judge_messages(example.question, example.reference, answer),  # type: ignore[arg-type]
                    max_tokens=JUDGE_MAX_TOKENS,
                    temperature=0,
                )
                text = reply.choices[0].message.content if reply.choices else None
            except openai.APIError:
                text = None
        judgement = parse_judgement(text)
        if judgement is None:
            self.judge_fallbacks[model] = self.judge_fallbacks.get(model, 0) + 1
        return judgement

    async def one(self, model: str, example: Example) -> AnswerScore:
        """Ask, judge and score one example."""
        answer = await self.ask(model, example)
        judgement = None
        if answer.text is not None:
            judgement = await self.judge(model, example, answer.text)
        return score_answer(example, answer, judgement, self._lexicon, self._settings)

    async def model(self, model: str, examples: Sequence[Example]) -> ModelMetrics:
        """All of ``examples`` through ``model``, aggregated."""
        scores = await asyncio.gather(*(self.one(model, ex) for ex in examples))
        return aggregate(model, scores)


async def evaluate(
    dataset_dir: Path,
    candidate: str,
    stable: str,
    client: openai.AsyncOpenAI,
    settings: FinetuneSettings,
    *,
    limit: int | None = None,
    lexicon: Lexicon | None = None,
    clock: Callable[[], float] = time.perf_counter,
    wall_clock: Callable[[], float] = time.time,
) -> EvaluationResult:
    """Evaluate ``candidate`` against ``stable`` on the dataset's test split.

    Raises :class:`DatasetError` when the test split cannot be read; request
    and judge failures are counted in the result instead.
    """
    ev = settings.evaluation
    started = wall_clock()
    examples, total = await asyncio.to_thread(
        load_test_set, dataset_dir, settings, limit if limit is not None else ev.limit
    )
    lexicon = lexicon or load_lexicon(
        settings.validation.cultural_lexicon, settings.validation.cultural_terms
    )
    limiter = Limiter(ev.concurrency, ev.requests_per_second, ev.burst)
    runner = _Runner(client, limiter, settings, lexicon, clock)
    cand, stab = await asyncio.gather(
        runner.model(candidate, examples), runner.model(stable, examples)
    )
    return EvaluationResult(
        candidate=cand,
        stable=stab,
        gate=decide(cand, stab, ev.gate),
        method=f"judge:{ev.judge_model}" if ev.judge_model else "lexical",
        dataset_dir=dataset_dir,
        dataset_hash=await asyncio.to_thread(dataset_hash, dataset_dir),
        test_examples=total,
        started=started,
        finished=wall_clock(),
        errors=runner.errors,
        judge_fallbacks=runner.judge_fallbacks,
    )
