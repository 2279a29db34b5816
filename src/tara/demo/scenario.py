"""The demo's scenarios and its pace: pure definitions, no I/O.

A :class:`Scenario` names a candidate model of known quality in the sandbox
and the ending the controller must reach on its own. A :class:`LoopScenario`
starts nothing: students of one segment find the stable model poor, and the
controller's fine-tuning loop must notice, train, gate and promote a model
for that segment by itself. A :class:`Pace` says
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
from pathlib import Path

from tara.finetune.config import FinetuneSettings
from tara.retrain.config import RetrainSettings, RuleAction
from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.model import Phase
from tara.rollout.routing import Segment
from tara.sandbox.config import FineTuningConfig
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.triggers.config import TriggerSettings
from tara.triggers.rules import LOW_RATING, TRIGGERS

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


@dataclass(frozen=True, slots=True)
class LoopScenario:
    """Students of ``weak`` rate every model poorly but one fine-tuned on their own data.

    Nobody starts anything: the quality trigger must fire for ``weak``, a run
    must prepare its slice of the log, train in the sandbox, pass the gate and
    end as a promoted canary scoped to ``weak``; ``bystander`` students must
    only ever get the stable model.
    """

    name: str
    weak: Segment
    weak_quality: float
    """The quality students of ``weak`` see in any model not fine-tuned by this demo."""
    bystander: Segment
    weak_share: float
    """Share of the scenario's students in ``weak`` (the rest are bystanders)."""
    story: str
    expected: str = "promoted"

    def quality(self, subject: str, language: str, model: str, quality: float) -> float:
        """The quality a student of ``(subject, language)`` sees in ``model`` of ``quality``."""
        tuned = model.startswith("ft:")
        return self.weak_quality if self.weak.matches(subject, language) and not tuned else quality


FULL_LOOP = LoopScenario(
    "full-loop",
    weak=Segment("math", "hi"),
    weak_quality=0.45,
    bystander=Segment("physics", "en"),
    weak_share=0.85,
    story="Hindi-math students rate the stable model poorly (2.8 of 5): the quality trigger "
    "must fire, and a run must prepare the Hindi-math data, train in the sandbox, pass the "
    "gate and be promoted as a Hindi-math canary, with nobody in between; English physics "
    "stays on stable",
)

AnyScenario = Scenario | LoopScenario

SCENARIO_CHOICES: tuple[str, ...] = (*SCENARIOS, FULL_LOOP.name, "all")


def scenarios_for(choice: str) -> list[AnyScenario]:
    """The scenarios ``--scenario`` names, in running order (``all``: bad, good, full loop)."""
    if choice == "all":
        return [SCENARIOS["bad-canary"], SCENARIOS["good-canary"], FULL_LOOP]
    if choice == FULL_LOOP.name:
        return [FULL_LOOP]
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
    trigger_period: float = 10.0
    """Seconds of "this week" for the triggers (the strategy's seven days, compressed)."""
    loop_interval: float = 1.0
    """Seconds between two looks of the controller at the triggers (the strategy's hour)."""
    training_seconds: float = 3.0
    """How long a sandbox fine-tuning job trains."""
    min_training_examples: int = 60
    """Examples rated ≥ 4 a segment needs to train on (the strategy's 1,000)."""
    loop_time_limit: float = 110.0
    """Seconds the full loop may take before the demo gives up on it."""


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
        trigger_period=6.0,
        loop_interval=0.5,
        training_seconds=1.0,
        min_training_examples=60,
        loop_time_limit=60.0,
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


DEMO_RULE_ACTIONS: dict[str, RuleAction] = {
    name: RuleAction.START_RUN if name == LOW_RATING else RuleAction.ALERT for name in TRIGGERS
}
"""In the demo only the quality rule starts runs: with weeks compressed into seconds, the
week-over-week rules would fire on the canaries' own noise."""


def loop_settings(
    pace: Pace, upstream: str, data_dir: Path, base: FinetuneSettings | None = None
) -> dict[str, object]:
    """The triggers, fine-tuning and loop sections the demo runs on: time compressed, the
    data requirement scaled to seconds of traffic, the gate's margins kept."""
    base = base if base is not None else FinetuneSettings()
    evaluation = base.evaluation.model_copy(
        update={
            # The sandbox's judge grades by the answering model's quality (its answers'
            # words do not depend on it, so lexical scores would be a coin flip).
            "judge_model": "tara-judge",
            "requests_per_second": 500.0,
            "burst": 50,
            "concurrency": 32,
            "limit": 24,
            "gate": base.evaluation.gate.model_copy(
                # Both models answer from one loopback sandbox: their p95s are scheduler noise.
                update={"latency_slack_ms": 5000.0, "min_samples": 5}
            ),
        }
    )
    finetune = base.model_copy(
        update={
            "base_url": upstream,
            "min_interactions": 20,
            "split": base.split.model_copy(update={"train": 0.7, "validation": 0.1, "test": 0.2}),
            "evaluation": evaluation,
        }
    )
    return {
        "triggers": TriggerSettings(
            period=timedelta(seconds=pace.trigger_period),
            min_ratings=30,
            volume_lookback=timedelta(hours=1),
        ),
        "finetune": finetune,
        "retrain": RetrainSettings(
            interval=timedelta(seconds=pace.loop_interval),
            rule_actions=DEMO_RULE_ACTIONS,
            min_training_examples=pace.min_training_examples,
            data_dir=data_dir / "runs",
            poll_interval=timedelta(seconds=0.25),
            step_backoff=0.1,
            step_max_backoff=1.0,
        ),
    }


def fine_tuning(pace: Pace) -> FineTuningConfig:
    """The sandbox's training: ``pace.training_seconds`` long, and worth a clear gain.

    A fine-tune starts from the best candidate's behaviour (0.88) and gains up
    to 0.2, so it beats whichever model is stable when the loop runs, by more
    than the judge's grading jitter: the story is a segment fixed, not a coin flip.
    """
    return FineTuningConfig(
        training_seconds=pace.training_seconds,
        template_model="tara-candidate-good",
        max_quality_gain=0.2,
        half_gain_examples=10,
    )
