"""The demo's scenarios and its pace: pure definitions, no I/O.

A :class:`Scenario` names a candidate model of known quality in the sandbox
and the ending the controller must reach on its own. A :class:`Pace` says
how the strategy's days-long stages are compressed into seconds and how much
traffic the simulated students send. The numbers are chosen together: every
stage needs :data:`MIN_STAGE_REQUESTS` canary requests because with fewer
the controller's 95%-confidence error-rate test cannot pass a canary that
fails not at all (see :class:`tara.rollout.sequential.RateTest`), so
a stage lasts at least as long as it takes the canary's share of the arrival
rate to send that many.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.model import Phase
from tara.telemetry.stats_config import TelemetryStatsSettings

TRACK = "tara-tutor"
STABLE_MODEL = "tara-stable"

MIN_STAGE_REQUESTS = 100
"""Canary requests per stage: the error-rate test passes a flawless canary after 90."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A candidate rolled out on the track, and the ending the controller must reach."""

    name: str
    candidate: str
    expected: Phase
    story: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "bad-canary",
            "tara-candidate-bad",
            Phase.ROLLED_BACK,
            "a fine-tune that got worse (quality 0.40; a fifth of its upstream calls fail, "
            "mostly hidden by the gateway's retries): the controller must roll it back itself",
        ),
        Scenario(
            "good-canary",
            "tara-candidate-good",
            Phase.SUCCEEDED,
            "a fine-tune that got better (quality 0.88 vs 0.75): "
            "promoted 10% -> 25% -> 50% -> 100% and made stable",
        ),
    )
}

SCENARIO_CHOICES: tuple[str, ...] = (*SCENARIOS, "all")


def scenarios_for(choice: str) -> list[Scenario]:
    """The scenarios ``--scenario`` names, in running order (``all``: bad, then good)."""
    if choice == "all":
        return [SCENARIOS["bad-canary"], SCENARIOS["good-canary"]]
    if choice not in SCENARIOS:
        msg = f"unknown scenario {choice!r}; one of: {', '.join(SCENARIO_CHOICES)}"
        raise ValueError(msg)
    return [SCENARIOS[choice]]


@dataclass(frozen=True, slots=True)
class Pace:
    """Stage compression and traffic of one demo run."""

    name: str
    arrival_rate: float
    """Questions per second from all students together (Poisson arrivals)."""
    students: int
    stage_percents: tuple[float, ...]
    stage_seconds: tuple[float, ...]
    min_ratings: int
    """Canary ratings per stage (the rating test needs ~35 a side to pass a better canary)."""
    interval: float
    """Seconds between analyses (the first stage is intensive: twice as often)."""
    warmup: float
    """Seconds of stable-only traffic before the first rollout, so stable has a baseline."""
    tail: float
    """Seconds of traffic after a rollout ends, to show where students went."""
    time_limit: float
    """Seconds a rollout may take before the demo gives up on it (scenario failed)."""
    window: float
    """Seconds of recent traffic behind the live numbers and the plotted series."""
    real_latency: bool
    """The sandbox's real latencies (150 ms median first token), else a fixed 10 ms."""
    max_in_flight: int = 200
    """Open requests at most; a slower machine lowers the arrival rate instead of piling up."""


PACES: dict[str, Pace] = {
    "real": Pace(
        name="real",
        arrival_rate=60.0,
        # Many students asking now and then (not a few asking often): the canary's
        # share of *students* is then close to its weight, so stage 1 is not starved.
        students=3000,
        stage_percents=(10, 25, 50),
        stage_seconds=(16.0, 8.0, 6.0),
        min_ratings=40,
        interval=1.0,
        warmup=4.0,
        tail=3.0,
        time_limit=75.0,
        window=10.0,
        real_latency=True,
    ),
    # For tests and CI: bigger canary shares, more traffic and a fast upstream reach
    # the same evidence in seconds; the statistics are those of ``real``. Shares stay
    # near 50% because stable's latency baseline (150 samples) needs traffic too.
    "quick": Pace(
        name="quick",
        arrival_rate=150.0,
        students=400,
        stage_percents=(40, 50, 60),
        stage_seconds=(1.5, 1.0, 1.0),
        min_ratings=40,
        interval=0.25,
        warmup=1.0,
        tail=0.6,
        time_limit=40.0,
        window=3.0,
        real_latency=False,
    ),
}


def rollout_settings(pace: Pace, base: RolloutSettings | None = None) -> RolloutSettings:
    """``base`` (default: the defaults) with the pace's stages and cadence.

    Thresholds and confidences stay as configured: the demo compresses time,
    not rigour. The first stage is intensive, as in the strategy.
    """
    base = base if base is not None else RolloutSettings()
    stages = [
        StageSettings(
            percent=percent,
            duration=timedelta(seconds=seconds),
            min_requests=MIN_STAGE_REQUESTS,
            min_ratings=pace.min_ratings,
            intensive=i == 0,
        )
        for i, (percent, seconds) in enumerate(
            zip(pace.stage_percents, pace.stage_seconds, strict=True)
        )
    ]
    return base.model_copy(
        update={
            "stages": stages,
            "interval": timedelta(seconds=pace.interval),
            "intensive_interval": timedelta(seconds=pace.interval / 2),
            "tick_interval": timedelta(seconds=min(0.25, pace.interval / 2)),
            "leader_ttl": timedelta(seconds=5),
            "min_stable_latency_samples": 150,
            "stall_factor": 20.0,
            "webhooks": [],
            "shutdown_timeout": 2.0,
        }
    )


def stats_settings(base: TelemetryStatsSettings | None = None) -> TelemetryStatsSettings:
    """One-second buckets flushed four times a second, so stage windows are exact."""
    base = base if base is not None else TelemetryStatsSettings()
    fast = {"bucket_seconds": 1, "rollup_seconds": 60, "flush_interval": 0.25}
    return base.model_copy(update=fast)
