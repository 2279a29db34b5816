"""The evaluation gate: does the candidate do well enough against stable to roll out?

A pure function of the two models' metrics and the margins
(:class:`~tara.finetune.eval_config.GateSettings`), so it is tested as a
table. Every check is reported, passed or not, with the numbers it
compared; the gate passes only when all of them do. Too few answered
examples is its own outcome (``inconclusive``), not a pass.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tara.finetune.eval_config import GateSettings
from tara.finetune.scoring import ModelMetrics


class GateOutcome(enum.StrEnum):
    """The gate's verdict; too few answered examples is its own outcome, not a pass."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class Check:
    """One comparison: the rule, the two values and the bound the candidate had to meet."""

    name: str
    rule: str
    candidate: float
    stable: float
    bound: float
    passed: bool


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's outcome and every check behind it."""

    outcome: GateOutcome
    checks: tuple[Check, ...]
    reason: str

    @property
    def passed(self) -> bool:
        """Whether the candidate may be rolled out."""
        return self.outcome is GateOutcome.PASS


def _at_least(name: str, rule: str, cand: float, stable: float, bound: float) -> Check:
    return Check(name, rule, cand, stable, bound, cand >= bound - 1e-12)


def _at_most(name: str, rule: str, cand: float, stable: float, bound: float) -> Check:
    return Check(name, rule, cand, stable, bound, cand <= bound + 1e-12)


def checks(c: ModelMetrics, s: ModelMetrics, g: GateSettings) -> tuple[Check, ...]:
    """Every check of the gate, in report order."""
    return (
        _at_least(
            "accuracy",
            f"≥ stable − {g.accuracy_margin:g}",
            c.accuracy,
            s.accuracy,
            s.accuracy - g.accuracy_margin,
        ),
        _at_least(
            "cultural",
            f"≥ stable − {g.cultural_margin:g}",
            c.cultural,
            s.cultural,
            s.cultural - g.cultural_margin,
        ),
        _at_most(
            "lexicon_hits",
            "≤ stable",
            float(c.lexicon_hits),
            float(s.lexicon_hits),
            float(s.lexicon_hits),
        ),
        _at_least("language", f"≥ {g.min_language:g}", c.language, s.language, g.min_language),
        _at_most(
            "latency_p95_ms",
            f"≤ {g.latency_ratio:g} × stable + {g.latency_slack_ms:g} ms",
            c.latency_p95_ms,
            s.latency_p95_ms,
            g.latency_ratio * s.latency_p95_ms + g.latency_slack_ms,
        ),
        _at_least(
            "satisfaction",
            f"≥ stable − {g.satisfaction_margin:g}",
            c.satisfaction,
            s.satisfaction,
            s.satisfaction - g.satisfaction_margin,
        ),
        _at_most(
            "error_rate",
            f"≤ stable + {g.error_rate_margin:g}",
            c.error_rate,
            s.error_rate,
            s.error_rate + g.error_rate_margin,
        ),
    )


def decide(candidate: ModelMetrics, stable: ModelMetrics, gate: GateSettings) -> GateResult:
    """Pass, fail or inconclusive for ``candidate`` against ``stable``."""
    results = checks(candidate, stable, gate)
    fewest = min(candidate.answered, stable.answered)
    if fewest < gate.min_samples:
        reason = f"only {fewest} answered examples (at least {gate.min_samples} needed)"
        return GateResult(GateOutcome.INCONCLUSIVE, results, reason)
    failed = [c.name for c in results if not c.passed]
    if failed:
        return GateResult(GateOutcome.FAIL, results, "failed: " + ", ".join(failed))
    return GateResult(GateOutcome.PASS, results, "every check passed")
