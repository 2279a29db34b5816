"""What an operator sees of a rollout: its JSON status, pure and clock-driven.

Shared by the admin API (``GET /admin/rollouts/{id}``) and, through it, the
``tara rollout status`` command. Live numbers come from the same analysis
the controller runs, so the confidence bounds shown are the ones it acts on.
"""

from __future__ import annotations

from typing import Any

from tara.rollout.bucketing import BUCKETS
from tara.rollout.config import RolloutSettings
from tara.rollout.model import RUNNING, Rollout, flags
from tara.rollout.plan import Stage
from tara.rollout.report import compare
from tara.telemetry.windows import WindowStats

RECENT_DECISIONS = 20
"""Decisions shown in a status (the full history stays in the record)."""


def _percent(weight_bp: int) -> float:
    return 100 * weight_bp / BUCKETS


def summary(rollout: Rollout, now: float) -> dict[str, Any]:
    """One rollout in a line's worth of fields: where it is and how long the stage has left."""
    r = rollout
    running = r.phase in RUNNING
    stage = r.stage
    elapsed = r.stage_elapsed(now) if running else None
    last = r.stage_index >= r.plan.last_index
    return {
        "id": r.id,
        "track": r.track,
        "segment": r.segment.label,
        "subject": r.segment.subject,
        "language": r.segment.language,
        "stable_model": r.stable_model,
        "candidate_model": r.candidate_model,
        "phase": r.phase.value,
        "stage": r.stage_index + 1,
        "stages": len(r.plan.stages),
        "weight_percent": _percent(r.weight_bp),
        "next_weight_percent": (
            (100.0 if last else _percent(r.plan.stages[r.stage_index + 1].weight_bp))
            if running
            else None
        ),
        "stage_elapsed_seconds": elapsed,
        "stage_min_seconds": stage.min_duration,
        "time_left_seconds": (
            max(0.0, stage.min_duration - elapsed) if elapsed is not None else None
        ),
        "min_requests": stage.min_requests,
        "min_ratings": stage.min_ratings,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "last_decision": r.last_decision.to_dict() if r.last_decision else None,
        "flags": flags(r),
    }


def live_numbers(
    canary: WindowStats, stable: WindowStats, settings: RolloutSettings, stage: Stage | None = None
) -> dict[str, Any]:
    """Canary against stable now, as the controller judges ``stage``: the verdict with each
    check's boundaries, the evidence guards, and the A/B numbers."""
    # The analysis runs on numpy (~16 MiB of RSS): a gateway loads it when an operator
    # first asks for live numbers, not for serving.
    from tara.rollout.analysis import Levels, analyse

    return {
        "fail_confidence": 1 - Levels.of(settings, stage).fail,
        "pass_confidence": settings.pass_confidence,
        "analysis": analyse(canary, stable, settings, stage).to_dict(),
        "comparison": compare(canary, stable),
    }


def detail(rollout: Rollout, now: float, live: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full status: the summary, the plan, recent decisions and (if given) live numbers."""
    data = summary(rollout, now)
    data["plan"] = rollout.plan.to_dict()
    data["salt"] = rollout.salt
    data["history"] = [d.to_dict() for d in rollout.history[-RECENT_DECISIONS:]]
    if live is not None:
        data["live"] = live
    return data
