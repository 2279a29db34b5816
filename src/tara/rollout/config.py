"""Settings of staged rollouts and canary analysis (``Settings.rollout``).

Durations accept seconds or ISO 8601 durations (``"P3D"``, ``"PT10M"``), so
the strategy's days-long stages and a test's seconds-long ones use one model.
The defaults are the fine-tuning strategy's: 10% for 3 days under intensive
monitoring, 25% for 4 days, 50% for a week, then the canary becomes stable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StageSettings(BaseModel):
    """One stage: canary share, how long at least, and how much evidence at least."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    percent: float = Field(gt=0, lt=100)
    """Canary share of the segment's students in this stage."""
    duration: timedelta
    """Minimum time in the stage before it may pass (paused time does not count)."""
    min_requests: int = Field(1000, ge=0)
    """Canary requests needed in the stage before it may pass."""
    min_ratings: int = Field(200, ge=0)
    """Canary ratings needed in the stage before it may pass."""
    intensive: bool = False
    """Analyse at ``intensive_interval`` instead of ``interval``."""


def _default_stages() -> list[StageSettings]:
    return [
        StageSettings(
            percent=10,
            duration=timedelta(days=3),
            min_requests=1000,
            min_ratings=200,
            intensive=True,
        ),
        StageSettings(percent=25, duration=timedelta(days=4), min_requests=2000, min_ratings=400),
        StageSettings(percent=50, duration=timedelta(days=7), min_requests=4000, min_ratings=800),
    ]


class RolloutSettings(BaseModel):
    """Stages, fallback thresholds and the statistics' knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    stages: list[StageSettings] = Field(default_factory=_default_stages, min_length=1)
    """Partial stages in order; passing the last one makes the canary stable (100%)."""
    interval: timedelta = timedelta(hours=1)
    """How often the controller analyses a rollout in a normal stage.

    The statistics stay valid at any cadence; looking more often only costs CPU
    (and makes ``tara simulate`` slower)."""
    intensive_interval: timedelta = timedelta(minutes=10)
    """How often it analyses in an intensive stage."""

    rating_drop_limit: float = Field(0.3, gt=0, lt=4)
    """Roll back when stable's mean rating exceeds the canary's by more than this."""
    error_rate_limit: float = Field(0.05, gt=0, lt=1)
    """Roll back when the canary fails more than this share of requests (and more than stable)."""
    latency_ratio_limit: float = Field(2.0, gt=1)
    """Roll back when the canary's latency quantile exceeds this multiple of stable's."""
    latency_quantile: float = Field(0.95, gt=0.5, lt=1)
    """The latency quantile compared (p95)."""

    fail_confidence: float = Field(0.95, gt=0.5, lt=1)
    """Confidence needed to roll back (anytime-valid, however often the controller looks)."""
    pass_confidence: float = Field(0.95, gt=0.5, lt=1)
    """Confidence needed that the canary is within every limit before a stage passes."""
    max_consecutive_errors: int = Field(3, ge=1)
    """Unreadable stats this many looks in a row pause the rollout and alert; never roll back."""
    stall_factor: float = Field(3.0, ge=1)
    """Pause and alert when a stage runs this many times its duration without passing."""

    min_test_ratings: int = Field(30, ge=2)
    """Ratings per variant before the rating test runs (its normal approximation needs them)."""
    min_stable_latency_samples: int = Field(200, ge=1)
    """Stable latencies needed before its quantile is trusted as the yardstick."""
    rating_variance_floor: float = Field(0.25, gt=0)
    """Lower bound on a rating variance estimate, so a run of identical ratings is no proof."""
    rating_mixture_scale: float = Field(0.2, gt=0)
    """Spread (rating points) of the mixture SPRT's prior; most sensitive near this effect."""
    rate_prior_strength: float = Field(20.0, gt=0)
    """Pseudo-observations of the beta prior of the rate tests (mean at the limit)."""

    # -- the controller process (tara controller) ---------------------------
    tick_interval: timedelta = timedelta(seconds=5)
    """How often the controller wakes; each rollout is analysed at its stage's interval."""
    leader_ttl: timedelta = timedelta(seconds=15)
    """Leader lease lifetime; a dead leader is replaced after at most this long."""
    controller_host: str = "127.0.0.1"
    """Address ``tara controller`` serves its probes and metrics on."""
    controller_port: int = Field(8090, ge=0, le=65535)
    """Where ``tara controller`` serves /metrics, /healthz and /readyz."""
    shutdown_timeout: float = Field(10.0, ge=0)
    """How long a stopping controller waits for a running tick and pending webhooks."""
    liveness_timeout: timedelta = timedelta(minutes=3)
    """``/healthz`` fails when no tick has finished (well or not) for this long: the loop
    is hung or dead, and the kubelet restarts the controller."""
    webhooks: list[str] = Field(default_factory=list)
    """URLs that get a JSON POST on start, promote, pause, rollback and success."""
    webhook_timeout: float = Field(5.0, gt=0)
    """Seconds one webhook POST may take."""
    webhook_attempts: int = Field(5, ge=1)
    """Tries per webhook delivery before it is dropped (and logged)."""
    webhook_backoff: float = Field(1.0, ge=0)
    """First retry delay in seconds; doubles per attempt, with jitter, up to 60 s."""
    metric_source: Literal["window", "prometheus"] = "window"
    """Where the controller reads canary and stable numbers: the gateway's window stats,
    or Prometheus at ``prometheus_url`` (PromQL over HTTP)."""
    prometheus_url: str = "http://127.0.0.1:9090"
    """Base URL of the Prometheus that scrapes every gateway replica."""
    prometheus_timeout: float = Field(10.0, gt=0)
    """Seconds one PromQL query may take; a slower answer is an ``ERROR`` look, never a rollback."""

    @field_validator("stages")
    @classmethod
    def _increasing(cls, stages: list[StageSettings]) -> list[StageSettings]:
        percents = [s.percent for s in stages]
        if percents != sorted(set(percents)):
            msg = f"stage percents must strictly increase, got {percents}"
            raise ValueError(msg)
        return stages
