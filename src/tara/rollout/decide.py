"""The controller's heart: one pure step from a rollout and its stats to the next rollout.

``step`` is called every analysis interval with the canary's and stable's
stats for the rollout's segment since the current stage began. What it does:

* ``ERROR`` (stats unreadable): count it; after ``max_consecutive_errors`` in
  a row pause and alert. Never roll back on errors — a metrics outage is not
  a bad model (the Flagger mistake).
* Sample ratio mismatch (the canary's share of students or requests is off
  its weight, once the stage has run ``srm_grace``): pause and alert with the
  numbers, and decide nothing on that data — no rollback, no promotion —
  until an operator resumes (then the mismatch is known and the stage goes
  on) or rolls back.
* Rating rates that differ: flag the rollout once (a recorded ``flag``
  decision and an alert); the flag travels with every later promotion and the
  success report, and promotion still waits for the stage's configured
  evidence. It never stops a rollback.
* ``FAIL``: roll back at once, even when paused (a paused canary still
  serves students).
* ``INCONCLUSIVE``: hold (an outage hitting both variants lands here).
* ``PASS``: promote to the next stage once the stage's minimum time, requests
  and ratings are reached; after the last stage the canary becomes stable,
  with a report.
"""

from __future__ import annotations

from typing import Any

from tara.rollout.actions import Action, Alert
from tara.rollout.analysis import Analysis, Measurement, Outcome, StatsInput, analyse
from tara.rollout.config import RolloutSettings
from tara.rollout.decisions import STAGE_ENTRIES, Decision, DecisionName
from tara.rollout.model import (
    TERMINAL,
    Phase,
    Rollout,
    Transition,
    flags,
    pause_for,
    promote_to_next_stage,
    rollback_for,
    transition,
)
from tara.rollout.model import pause as pause_rollout
from tara.rollout.model import start as start_rollout
from tara.rollout.report import compare, success_report
from tara.telemetry.windows import WindowStats

MISMATCH = "sample ratio mismatch"
"""How the reason of a pause for a sample ratio mismatch begins."""


def _hold(rollout: Rollout, now: float, reason: str, analysis: Analysis) -> Transition:
    decision = Decision(now, DecisionName.HOLD, reason, {"analysis": analysis})
    return transition(rollout, decision, record=False, consecutive_errors=0)


def _on_error(rollout: Rollout, now: float, analysis: Analysis, cfg: RolloutSettings) -> Transition:
    errors = rollout.consecutive_errors + 1
    limit = cfg.max_consecutive_errors
    reason = f"{analysis.reason} ({errors} in a row, pause at {limit})"
    decision = Decision(now, DecisionName.ERROR, reason, {"consecutive_errors": errors})
    new, notices = transition(rollout, decision, consecutive_errors=errors)
    if errors != limit or rollout.phase is not Phase.PROGRESSING:
        return new, notices
    why = f"stats unreadable {errors} times in a row: {analysis.reason}"
    paused, actions = pause_rollout(new, now, actor="controller", reason=why)
    return paused, [*notices, *actions, Alert(rollout.id, f"rollout {rollout.id} paused: {why}")]


def _mismatch_known(rollout: Rollout) -> bool:
    """Whether an operator resumed the rollout after a mismatch pause in this stage."""
    resumed = False
    for d in reversed(rollout.history):
        if d.decision in STAGE_ENTRIES:
            return False
        if d.decision is DecisionName.RESUME:
            resumed = True
        elif d.decision is DecisionName.PAUSE and d.reason.startswith(MISMATCH) and resumed:
            return True
    return False


def _mismatch(rollout: Rollout, now: float, srm: Measurement, analysis: Analysis) -> Transition:
    """Pause (or stay paused) without deciding anything on data routed wrongly."""
    why = f"{srm.reason}; no decision on this data until an operator resumes or rolls back"
    if rollout.phase is not Phase.PROGRESSING:
        return _hold(rollout, now, f"paused; {why}", analysis)
    decision = Decision(now, DecisionName.PAUSE, why, {"sample_ratio": srm.to_dict()})
    paused, actions = pause_for(rollout, decision)
    stage = rollout.stage_index + 1
    alert = Alert(rollout.id, f"rollout {rollout.id} paused in stage {stage}: {why}")
    return paused, [*actions, alert]


def _flag(rollout: Rollout, now: float, parity: Measurement) -> Transition:
    """Record the rating-rate flag once, and say so."""
    reason = f"{parity.reason}; promotion waits for the configured evidence"
    decision = Decision(now, DecisionName.FLAG, reason, {"rating_rate": parity.to_dict()})
    new, notices = transition(rollout, decision, consecutive_errors=0)
    return new, [*notices, Alert(rollout.id, f"rollout {rollout.id} flagged: {reason}")]


def _gate(rollout: Rollout, canary: WindowStats, now: float) -> str | None:
    """What the current stage still waits for, or ``None`` when it may pass."""
    stage = rollout.stage
    missing = []
    elapsed = rollout.stage_elapsed(now)
    if elapsed < stage.min_duration:
        missing.append(f"time {elapsed:.0f}s of {stage.min_duration:.0f}s")
    if canary.requests < stage.min_requests:
        missing.append(f"canary requests {canary.requests} of {stage.min_requests}")
    if canary.rating_count < stage.min_ratings:
        missing.append(f"canary ratings {canary.rating_count} of {stage.min_ratings}")
    if not missing:
        return None
    flagged = " (flagged: rating rates differ)" if flags(rollout) else ""
    return "waiting for " + ", ".join(missing) + flagged


def _stalled(
    rollout: Rollout, now: float, reason: str, analysis: Analysis, cfg: RolloutSettings
) -> Transition:
    """Hold; alert once if the stage has run ``stall_factor`` times its duration."""
    limit = rollout.stage.min_duration * cfg.stall_factor
    if rollout.stall_alerted or rollout.stage_elapsed(now) < limit:
        return _hold(rollout, now, reason, analysis)
    message = (
        f"rollout {rollout.id} stage {rollout.stage_index + 1} has not passed after "
        f"{limit:.0f}s: {reason}"
    )
    decision = Decision(now, DecisionName.STALLED, message, {"analysis": analysis.to_dict()})
    new, notices = transition(rollout, decision, consecutive_errors=0, stall_alerted=True)
    return new, [*notices, Alert(rollout.id, message)]


def step(
    rollout: Rollout,
    canary: StatsInput,
    stable: StatsInput,
    cfg: RolloutSettings,
    now: float,
) -> tuple[Rollout, list[Action]]:
    """Decide what to do with ``rollout`` now, given both variants' stats for its stage."""
    if rollout.phase in TERMINAL:
        return rollout, []
    if rollout.phase is Phase.PENDING:
        return start_rollout(rollout, now)
    analysis = analyse(canary, stable, cfg, rollout.stage)
    if (
        analysis.outcome is Outcome.ERROR
        or not isinstance(canary, WindowStats)
        or not isinstance(stable, WindowStats)
    ):
        return _on_error(rollout, now, analysis, cfg)
    srm = analysis.guard("sample_ratio")
    settled = rollout.stage_elapsed(now) >= cfg.srm_grace.total_seconds()
    if srm is not None and settled and not _mismatch_known(rollout):
        return _mismatch(rollout, now, srm, analysis)
    said: list[Action] = []
    parity = analysis.guard("rating_rate")
    if parity is not None and not flags(rollout):
        rollout, said = _flag(rollout, now, parity)
    rollout, actions = _verdict(rollout, canary, stable, cfg, now, analysis)
    return rollout, [*said, *actions]


def _verdict(
    rollout: Rollout,
    canary: WindowStats,
    stable: WindowStats,
    cfg: RolloutSettings,
    now: float,
    analysis: Analysis,
) -> Transition:
    if analysis.outcome is Outcome.FAIL:
        failed = {"analysis": analysis.to_dict(), "comparison": compare(canary, stable)}
        return rollback_for(rollout, Decision(now, DecisionName.ROLLBACK, analysis.reason, failed))
    if rollout.phase is Phase.PAUSED:
        return _hold(rollout, now, f"paused; {analysis.reason}", analysis)
    if analysis.outcome is Outcome.INCONCLUSIVE:
        return _stalled(rollout, now, analysis.reason, analysis, cfg)
    waiting = _gate(rollout, canary, now)
    if waiting is not None:
        return _stalled(rollout, now, waiting, analysis, cfg)
    comparison = compare(canary, stable)
    flagged = flags(rollout)
    evidence: dict[str, Any] = {"analysis": analysis.to_dict(), "comparison": comparison}
    if flagged:
        evidence["flags"] = flagged
    last = rollout.stage_index >= rollout.plan.last_index
    if last:
        reason = "canary passed every stage; it is now stable\n" + success_report(comparison)
        reason += "".join(f"\nflag: {f}" for f in flagged)
    else:
        reason = f"stage {rollout.stage_index + 1} passed"
    name = DecisionName.SUCCEED if last else DecisionName.STAGE_PASSED
    return promote_to_next_stage(rollout, Decision(now, name, reason, evidence))
