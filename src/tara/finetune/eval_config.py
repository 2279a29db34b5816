"""Settings of the offline evaluation (``Settings.finetune.evaluation``).

The candidate and the stable model answer the held-out test split through
``Settings.upstream``; these fields say how hard to push the upstream, who
judges the answers, and how much worse than stable a candidate may be.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class GateSettings(_Section):
    """Margins of the pass/fail gate (candidate against stable, see :mod:`tara.finetune.gate`)."""

    accuracy_margin: float = Field(0.02, ge=0, le=1)
    """The candidate's mean accuracy (0..1) may be at most this much below stable's."""
    cultural_margin: float = Field(0.0, ge=0, le=1)
    """Mean cultural appropriateness (0..1) may be at most this much below stable's."""
    min_language: float = Field(0.9, ge=0, le=1)
    """Share of answers in the expected language's script the candidate must reach."""
    latency_ratio: float = Field(1.5, gt=0)
    """The candidate's p95 response time may be at most this multiple of stable's ..."""
    latency_slack_ms: float = Field(50.0, ge=0)
    """... plus this, so that millisecond noise against a fast upstream cannot fail a gate."""
    satisfaction_margin: float = Field(0.0, ge=0, le=4)
    """Predicted satisfaction (1..5) may be at most this much below stable's."""
    error_rate_margin: float = Field(0.02, ge=0, le=1)
    """Share of failed requests may be at most this much above stable's."""
    min_samples: int = Field(10, ge=1)
    """Fewer answered examples than this make the evaluation inconclusive (a fail)."""


class EvaluationSettings(_Section):
    """How ``tara finetune evaluate`` queries the models, judges them and registers winners."""

    stable_model: str | None = None
    """Model to compare against; unset: the first track's stable model."""
    judge_model: str | None = None
    """Model that grades answers with the rubric; unset: lexical scores against the reference."""
    concurrency: int = Field(8, ge=1, le=256)
    """Requests in flight at once (answers and judgements together)."""
    requests_per_second: float = Field(20.0, gt=0)
    """Sustained request rate of the evaluation against the upstream."""
    burst: int = Field(8, ge=1)
    """Token bucket: sustained request rate and how many may start back to back."""
    max_retries: int = Field(3, ge=0, le=10)
    """Retries of a failed request (the ``openai`` SDK's backoff, honouring Retry-After)."""
    request_timeout: float = Field(60.0, gt=0)
    """Seconds per evaluation request."""
    max_answer_tokens: int = Field(1024, gt=0)
    """Token limit for each evaluated answer."""
    limit: int | None = Field(None, ge=1)
    """Evaluate only the first N test examples (the CLI's ``--limit``)."""
    state_dir: Path = Path("tara-data")
    """Holds ``candidates.json``, the registry of candidates that passed, for the rollout."""
    gate: GateSettings = GateSettings()
