"""Evaluate every trigger, apply the cooldown, and say which runs would start.

:func:`decide` is pure: rule results and the run state in, verdicts out. A
fired trigger whose scope started a run less than ``cooldown`` ago is
reported as cooling down and starts nothing. For each trigger that would
start a run, the verdict carries the ``tara finetune prepare`` arguments it
would use; nothing is started here. :func:`run_check` is the thin I/O shell
the CLI (and, once wired, the controller) calls; given a metrics recorder it
counts each fired trigger in ``tara_trigger_fired_total{trigger}``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, Scope, TriggerResult
from tara.triggers.reader import TelemetryReader
from tara.triggers.retirement import BASE_RETIREMENT, base_of
from tara.triggers.rules import ACADEMIC_YEAR, DATA_VOLUME, evaluate
from tara.triggers.state import TriggerState, cooling_down

if TYPE_CHECKING:
    from tara.settings import Settings
    from tara.telemetry.metrics import MetricsRecorder
    from tara.telemetry.window_store import WindowStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule result after the cooldown, with the run it would start."""

    result: TriggerResult
    last_run: float | None
    """When the scope last started a run (any trigger), if ever."""
    cooling_down: bool
    prepare_args: tuple[str, ...] = ()
    """``tara finetune prepare`` arguments of the run it would start (empty: none)."""
    base_model: str | None = None
    """Base model that run trains on, when not ``finetune.base_model`` (a retiring base's
    successor)."""

    @property
    def would_start(self) -> bool:
        """Fired, and the scope is not cooling down."""
        return bool(self.prepare_args)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view (the result's fields plus the cooldown and the run)."""
        return {
            **self.result.as_json(),
            "last_run": self.last_run,
            "cooling_down": self.cooling_down,
            "would_start": self.would_start,
            "prepare_args": list(self.prepare_args),
            "base_model": self.base_model,
        }


@dataclass(slots=True)
class CheckReport:
    """All verdicts of one check, as of ``at``."""

    at: float
    period: float
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def fired(self) -> list[Verdict]:
        """Verdicts whose trigger fired (cooling down or not)."""
        return [v for v in self.verdicts if v.result.fired]

    def runs(self) -> list[tuple[str, ...]]:
        """The distinct ``tara finetune prepare`` argument lists that would run."""
        return sorted({v.prepare_args for v in self.verdicts if v.would_start})

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "at": self.at,
            "period_seconds": self.period,
            "fired": len(self.fired),
            "would_start": [list(args) for args in self.runs()],
            "triggers": [v.as_json() for v in self.verdicts],
        }


def iso(t: float) -> str:
    """Unix seconds as an ISO 8601 UTC time (what ``--since`` accepts)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def prepare_args(
    result: TriggerResult, last_run: float | None, now: float, cfg: TriggerSettings, min_rating: int
) -> tuple[str, ...]:
    """The ``tara finetune prepare`` arguments a fired trigger would run with.

    The data starts where the data-volume count started, else at the scope's
    last run (at most ``volume_lookback`` back). ``prepare`` has no language
    or subject filter, so the run covers every combination; only a track
    scope narrows it.
    """
    since = result.evidence.get("since") if result.name == DATA_VOLUME else None
    if not isinstance(since, int | float):
        start = now - cfg.volume_lookback.total_seconds()
        since = start if last_run is None else max(start, last_run)
    args = ["tara", "finetune", "prepare", "--since", iso(since), "--min-rating", str(min_rating)]
    if result.scope.track is not None:
        args += ["--track", result.scope.track]
    return tuple(args)


def decide(
    results: Iterable[TriggerResult],
    state: TriggerState,
    now: float,
    cfg: TriggerSettings,
    min_rating: int,
) -> list[Verdict]:
    """Apply the cooldown to each result and plan the run of each that still fires.

    A topic's result cools down with its language×subject: the run is the segment's.
    """
    cooldown = cfg.cooldown.total_seconds()
    out: list[Verdict] = []
    for result in results:
        last = state.last_run(result.scope.run_scope)
        cooling = result.fired and cooling_down(last, now, cooldown)
        args = (
            prepare_args(result, last, now, cfg, min_rating) if result.fired and not cooling else ()
        )
        successor = result.evidence.get("successor") if result.name == BASE_RETIREMENT else None
        base = successor if args and isinstance(successor, str) else None
        out.append(Verdict(result, last, cooling, args, base))
    return out


def count_fired(report: CheckReport, metrics: MetricsRecorder) -> None:
    """Add each fired trigger of a check to ``tara_trigger_fired_total{trigger}``."""
    for verdict in report.fired:
        metrics.trigger_fired.labels(verdict.result.name).inc()


async def listed_models(
    settings: Settings, stable_models: Mapping[str, str]
) -> frozenset[str] | None:
    """The training backend's model ids, when it lists them and a stable model's base has a
    known retirement date (only then do they matter); None otherwise or when the list fails."""
    retirements = settings.triggers.base_model_retirements
    if not any(base_of(m) in retirements for m in stable_models.values()):
        return None
    from tara.finetune.backend import BackendError, open_backend

    try:
        backend = open_backend(settings)
    except ValueError:
        return None
    try:
        lister = getattr(backend, "list_models", None)
        return frozenset(await lister()) if lister is not None else None
    except BackendError as exc:
        log.warning("cannot list the training backend's models: %s", exc)
        return None
    finally:
        await backend.aclose()


async def run_check(
    settings: Settings,
    *,
    now: float | None = None,
    volume_since: float | None = None,
    windows: WindowStore | None = None,
    metrics: MetricsRecorder | None = None,
    state_dir: Path | None = None,
    stable_models: Mapping[str, str] | None = None,
    state: TriggerState | None = None,
) -> CheckReport:
    """Read telemetry, evaluate every trigger, apply the cooldown; count fired ones in metrics.

    Opens (and closes) the interaction log the settings name; ``windows`` is
    the shared window store when there is one; ``stable_models`` the stable
    model of each track as the routing table has it (default: the configured
    tracks'); ``state`` the trigger state (default: ``triggers.json`` in
    ``state_dir``). Starts no run.
    """
    from tara.telemetry.log_backends import open_log

    cfg = settings.triggers
    now = time.time() if now is None else now
    if state is None:
        state = TriggerState.load(state_dir or cfg.state_dir)
    log = open_log(settings.database_url, settings.telemetry)
    try:
        await log.migrate()
        reader = TelemetryReader(
            log,
            cfg,
            min_rating=settings.finetune.min_rating,
            windows=windows,
            tracks=settings.tracks,
        )
        obs = await reader.read(now, state, volume_since=volume_since)
    finally:
        await log.aclose()
    if stable_models is None:
        stable_models = {name: track.stable_model for name, track in settings.tracks.items()}
    obs.stable_models = dict(stable_models)
    obs.listed_models = await listed_models(settings, stable_models)
    results = evaluate(
        obs,
        cfg,
        subjects=settings.subjects,
        languages=settings.languages,
        academic_last_run=state.last_run(EVERYTHING, ACADEMIC_YEAR),
        successor_base_model=settings.finetune.base_model,
        retirement_runs={
            track: at
            for track in stable_models
            if (at := state.last_run(Scope(track=track), BASE_RETIREMENT)) is not None
        },
    )
    report = CheckReport(
        now, obs.period, decide(results, state, now, cfg, settings.finetune.min_rating)
    )
    if metrics is not None:
        count_fired(report, metrics)
    return report
