"""The base-model retirement trigger: retrain before the stable model's base is shut down.

A fine-tuned model answers only as long as its base model is served
(OpenAI: "until the underlying base model is deprecated"). So ``lead``
(``triggers.retirement_lead``, 60 days) before the known shutdown date of
the stable model's base, this rule proposes a run on the successor base
model (``triggers.successor_base_model``, else ``finetune.base_model``).
It fires once per shutdown: a run it started inside the lead window serves
it. A base model without a known date (``triggers.base_model_retirements``)
never fires it: the rule reports "not enough data" instead of guessing.

Where the training backend lists its models, the evidence says whether the
base and the successor are still listed (a base missing from the list is
already gone; a successor missing from it cannot be trained on).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping

from tara.triggers.model import Scope, TriggerResult

BASE_RETIREMENT = "base_model_retirement"
DAY = 86_400.0


def base_of(model: str) -> str:
    """The base model of a fine-tuned name (``ft:<base>:...``); any other model is its own."""
    if model.startswith("ft:"):
        base = model.split(":", 2)[1]
        if base:
            return base
    return model


def retires_at(day: dt.date) -> float:
    """Unix time of a shutdown date (its start, UTC)."""
    return dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()


def base_model_retirement(
    track: str,
    stable_model: str,
    now: float,
    *,
    retirements: Mapping[str, dt.date],
    lead: dt.timedelta,
    successor: str,
    last_run: float | None = None,
    listed: Collection[str] | None = None,
) -> TriggerResult:
    """Whether ``track``'s stable model must be retrained on ``successor`` now.

    ``last_run`` is when this trigger last started a run for the track;
    ``listed`` the training backend's model ids (None: it lists none).
    """
    lead_days = lead.total_seconds() / DAY
    base = base_of(stable_model)
    scope = Scope(track=track)
    evidence: dict[str, object] = {"stable_model": stable_model, "base_model": base}
    retires = retirements.get(base)
    if retires is None:
        evidence["note"] = "no known retirement date for the base model"
        return TriggerResult(BASE_RETIREMENT, False, scope, None, lead_days, "<=", evidence, False)
    shutdown = retires_at(retires)
    days = (shutdown - now) / DAY
    served = last_run is not None and last_run >= shutdown - lead.total_seconds()
    successor_retires = retirements.get(successor)
    evidence |= {
        "retires": retires.isoformat(),
        "successor": successor,
        "successor_retires": successor_retires.isoformat() if successor_retires else None,
        "already_served": served,
    }
    if listed is not None:
        evidence["base_listed"] = base in listed
        evidence["successor_listed"] = successor in listed
    fired = days <= lead_days and not served
    return TriggerResult(BASE_RETIREMENT, fired, scope, round(days, 2), lead_days, "<=", evidence)
