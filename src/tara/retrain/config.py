"""Settings of the fine-tuning loop the controller drives (``Settings.retrain``).

The defaults follow the fine-tuning strategy: triggers evaluated every hour,
at most two runs open at once, a segment trains only on 1,000 or more
examples rated 4 or 5 since its last run, and a model that passes the
evaluation gate goes to a canary on its own (``auto_deploy``). Business
rules (something new in traffic, the academic year, a retiring base model)
only alert: a person decides whether they are worth a run. The cooldown
between two runs of a segment is ``triggers.cooldown`` (14 days).
Durations accept seconds or ISO 8601 (``"PT1H"``), so tests and the demo run
the whole loop in seconds.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class RuleAction(enum.StrEnum):
    """What a rule that fires does: start a fine-tuning run, or only alert."""

    START_RUN = "start_run"
    ALERT = "alert"


BUSINESS_RULES: tuple[str, ...] = (
    "new_subject",
    "new_language",
    "new_grade",
    "academic_year",
    "base_model_retirement",
)
"""Rules that say something happened in the world, not that a model got worse: by default
they only alert."""


class RetrainSettings(BaseModel):
    """When the controller starts fine-tuning runs, and how it drives them."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    enabled: bool = True
    """The controller's leader evaluates the triggers and drives fine-tuning runs
    (off: it only judges rollouts; ``tara triggers check`` still works)."""
    interval: timedelta = timedelta(hours=1)
    """How often the leader evaluates the trigger rules."""
    track: str | None = None
    """Track whose segments are fine-tuned and rolled out; unset: the first configured track."""
    rule_actions: dict[str, RuleAction] = Field(default_factory=dict)
    """Per rule, ``start_run`` or ``alert``, over the defaults: the business rules
    (new subject, language or grade, academic year, base-model retirement) alert, every
    other rule starts a run."""
    max_open_runs: int = Field(2, ge=1)
    """Runs open at once at most (any segment); a firing beyond it waits for a later look."""
    min_training_examples: int = Field(1000, ge=1)
    """Interactions rated ≥ ``finetune.min_rating`` a segment needs since its last run;
    with fewer a firing starts no run and says so."""
    auto_deploy: bool = True
    """A model that passes the gate starts its canary at once; off: the run waits in
    ``evaluated`` for ``tara finetune approve RUN``."""
    data_dir: Path = Path("tara-data/runs")
    """Where each run's dataset and evaluation report are written (one directory per run)."""
    poll_interval: timedelta = timedelta(seconds=60)
    """How often a training job's status is read from the backend."""
    step_attempts: int = Field(5, ge=1)
    """Tries of one step (prepare, upload, create job, poll, evaluate, start canary) on
    errors that may pass, before the run is marked ``failed`` with the last error."""
    step_backoff: float = Field(2.0, ge=0)
    """First wait in seconds before retrying a step (doubling, jittered)."""
    step_max_backoff: float = Field(120.0, ge=0)
    """Longest wait between two tries of a step."""

    def action(self, rule: str) -> RuleAction:
        """What a firing of ``rule`` does (``rule_actions``, else its default)."""
        default = RuleAction.ALERT if rule in BUSINESS_RULES else RuleAction.START_RUN
        return self.rule_actions.get(rule, default)
