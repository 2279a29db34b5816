"""Scores of one answer and their aggregates per model: pure functions, no I/O.

Every score is 0..1 except latency (milliseconds), tokens and the predicted
satisfaction (1..5). A failed request (no answer after retries) scores 0 on
accuracy, cultural appropriateness and language, and 1 on satisfaction:
a student who got an error is not a happy one.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from tara.finetune.config import PromptSettings, Script, ValidationSettings
from tara.finetune.rules_language import check_language, count_letters
from tara.telemetry.quantiles import sample_quantile

_PUNCT = ".,!?;:()[]{}\"'`।॥«»“”‘’"

SATISFACTION_WEIGHTS = {"accuracy": 0.6, "cultural": 0.25, "language": 0.15}
"""How much each quality score counts in the predicted rating (they add up to 1)."""
SLOW_AFTER_S = 3.0
"""Answers slower than this start to cost satisfaction ..."""
SLOW_PENALTY_PER_S = 1 / 7
"""... this many rating points per further second, at most 1 point (at 10 s)."""


def words(text: str) -> list[str]:
    """Case-folded words without surrounding punctuation: what lexical scores compare."""
    out = []
    for w in text.casefold().split():
        w = w.strip(_PUNCT)
        if w:
            out.append(w)
    return out


def token_f1(answer: str, reference: str) -> float:
    """Bag-of-words F1 of the answer against the reference (SQuAD-style), 0..1."""
    a, r = words(answer), words(reference)
    if not a or not r:
        return 0.0
    common = sum((Counter(a) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def expected_language(
    system: str, reference: str, prompts: PromptSettings, scripts: Mapping[str, Script]
) -> str | None:
    """The language an answer should be in: named by the system prompt, else the reference's.

    The dataset's system prompts end with the language sentence of
    ``prompts.languages``; a prompt without one falls back to the script
    most of the reference's letters are in.
    """
    for language, sentence in prompts.languages.items():
        if sentence in system:
            return language
    best, best_count = None, 0
    for language, script in scripts.items():
        count = count_letters(reference, script).target
        if count > best_count:
            best, best_count = language, count
    return best


def language_ok(answer: str, language: str | None, settings: ValidationSettings) -> bool:
    """Whether the answer passes the dataset's language rule for ``language``."""
    if language is None:
        return True
    return check_language(answer, language, settings) is None


def predicted_satisfaction(
    accuracy: float, cultural: float, language: float, latency_s: float
) -> float:
    """The rating (1..5) a student is expected to give an answer with these scores.

    ``1 + 4 × (0.6·accuracy + 0.25·cultural + 0.15·language)``, minus
    ``(latency − 3 s) / 7`` points for a slow answer (at most 1), clamped to
    1..5. The weights are the strategy's priorities (a correct answer first,
    then one that fits the student's culture and language); they are a prior
    to be refitted against real ratings once a rollout has collected them.
    """
    w = SATISFACTION_WEIGHTS
    quality = w["accuracy"] * accuracy + w["cultural"] * cultural + w["language"] * language
    penalty = min(1.0, max(0.0, (latency_s - SLOW_AFTER_S) * SLOW_PENALTY_PER_S))
    return min(5.0, max(1.0, 1.0 + 4.0 * quality - penalty))


@dataclass(frozen=True, slots=True)
class AnswerScore:
    """One model's answer to one test example, scored."""

    ok: bool
    """Whether the model answered at all."""
    accuracy: float
    cultural: float
    language: float
    latency_ms: float
    tokens: int
    satisfaction: float
    lexicon_hit: str | None = None
    """The cultural lexicon entry found in the answer, if any."""
    judged: bool = False
    """Whether the judge graded it (else the lexical fallback did)."""


def failed(latency_ms: float) -> AnswerScore:
    """The score of a request that got no answer."""
    return AnswerScore(False, 0.0, 0.0, 0.0, latency_ms, 0, 1.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of raw values; 0 for no values.

    (:func:`tara.telemetry.quantiles.sample_quantile`: interpolated between order statistics.)
    """
    quantile = sample_quantile(values, q / 100)
    return 0.0 if quantile is None else quantile


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """A model's scores over the test set."""

    model: str
    samples: int
    """Test examples sent."""
    answered: int
    error_rate: float
    accuracy: float
    cultural: float
    language: float
    latency_p50_ms: float
    latency_p95_ms: float
    tokens_per_answer: float
    satisfaction: float
    lexicon_hits: int
    judged: int
    """Answers graded by the judge (the rest by the lexical fallback)."""

    def as_json(self) -> dict[str, float | int | str]:
        """The metrics as a JSON-ready dict (floats rounded for reading)."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def aggregate(model: str, scores: Sequence[AnswerScore]) -> ModelMetrics:
    """Means over every example (failures included), latency and tokens over answers."""
    answered = [s for s in scores if s.ok]
    n = len(scores)

    def mean(values: list[float]) -> float:
        return statistics.fmean(values) if values else 0.0

    return ModelMetrics(
        model=model,
        samples=n,
        answered=len(answered),
        error_rate=(n - len(answered)) / n if n else 0.0,
        accuracy=mean([s.accuracy for s in scores]),
        cultural=mean([s.cultural for s in scores]),
        language=mean([s.language for s in scores]),
        latency_p50_ms=percentile([s.latency_ms for s in answered], 50),
        latency_p95_ms=percentile([s.latency_ms for s in answered], 95),
        tokens_per_answer=mean([float(s.tokens) for s in answered]),
        satisfaction=mean([s.satisfaction for s in scores]),
        lexicon_hits=sum(1 for s in answered if s.lexicon_hit is not None),
        judged=sum(1 for s in answered if s.judged),
    )
