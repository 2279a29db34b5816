"""The A/B numbers reported for a rollout but never used to decide it.

Besides the three gated checks, the strategy judges a fine-tuned model by
rating improvement, response-time improvement, cultural-appropriateness
complaints, retry-rate reduction and tokens per answer. :func:`compare`
puts canary and stable side by side on those; :func:`success_report` is what
the controller announces when a canary becomes stable.
"""

from __future__ import annotations

from typing import Any

from tara.telemetry.windows import WindowStats

CULTURAL_TAG = "cultural"


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def variant_summary(stats: WindowStats) -> dict[str, float | int | None]:
    """The reported numbers of one variant."""
    answered = stats.answered
    return {
        "requests": stats.requests,
        "error_rate": stats.error_rate,
        "ratings": stats.rating_count,
        "rating_mean": stats.rating_mean,
        "latency_p95": stats.latency_quantile(0.95),
        "latency_mean": _ratio(stats.latency_sum, sum(stats.latency)),
        "ttft_p95": stats.ttft_quantile(0.95),
        "user_retry_rate": _ratio(stats.user_retries, stats.requests),
        "tokens_per_answer": stats.tokens_per_answer,
        "cultural_complaints": stats.tags.get(CULTURAL_TAG, 0),
        "cultural_per_1000_answers": _ratio(1000 * stats.tags.get(CULTURAL_TAG, 0), answered),
        "relevance_mean": stats.relevance_mean,
    }


def _diff(a: float | int | None, b: float | int | None) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def _relative(new: float | int | None, old: float | int | None) -> float | None:
    """``(old - new) / old``: positive when ``new`` is smaller (faster, fewer retries)."""
    if new is None or old is None or not old or old == float("inf") or new == float("inf"):
        return None
    return (float(old) - float(new)) / float(old)


def compare(canary: WindowStats, stable: WindowStats) -> dict[str, Any]:
    """Canary and stable side by side, with the strategy's success metrics."""
    c, s = variant_summary(canary), variant_summary(stable)
    return {
        "canary": c,
        "stable": s,
        "rating_improvement": _diff(c["rating_mean"], s["rating_mean"]),
        "p95_latency_improvement": _relative(c["latency_p95"], s["latency_p95"]),
        "mean_latency_improvement": _relative(c["latency_mean"], s["latency_mean"]),
        "cultural_complaints_change_per_1000": _diff(
            c["cultural_per_1000_answers"], s["cultural_per_1000_answers"]
        ),
        "retry_rate_reduction": _relative(c["user_retry_rate"], s["user_retry_rate"]),
        "tokens_per_answer_change": _diff(c["tokens_per_answer"], s["tokens_per_answer"]),
    }


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def _num(value: Any, fmt: str = "+.2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def success_report(comparison: dict[str, Any]) -> str:
    """One human line per success metric, from :func:`compare`'s output."""
    c, s = comparison["canary"], comparison["stable"]
    return "\n".join(
        (
            f"rating: {_num(c['rating_mean'], '.2f')} vs {_num(s['rating_mean'], '.2f')} "
            f"({_num(comparison['rating_improvement'])})",
            f"response time p95: {_pct(comparison['p95_latency_improvement'])} faster",
            f"cultural complaints per 1000 answers: "
            f"{_num(comparison['cultural_complaints_change_per_1000'])}",
            f"user retry rate: {_pct(comparison['retry_rate_reduction'])} lower",
            f"tokens per answer: {_num(comparison['tokens_per_answer_change'], '+.1f')}",
        )
    )
