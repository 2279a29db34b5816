"""How each sandbox model behaves: latency, injected errors, answer language and quality.

A :class:`SandboxConfig` holds the accepted API keys and a behaviour per
model name. The built-in models (:func:`default_config`) cover the rollout
story: a stable model, a better, a worse and a slower candidate, and
``bench-fast`` for benchmarks. A ``--models`` file (TOML or YAML) is merged
onto them: a model named in the file starts from the built-in of the same
name (if any) and overrides only the fields it gives.

Example ``models.toml``::

    api_keys = ["sk-sandbox"]          # empty or absent: any non-empty bearer key
    [models.tara-candidate-bad]
    quality = 0.3
    errors = { rate = 0.5, kinds = { rate_limit = 1, hang = 1 } }
    [models.my-model]
    latency = { ttft_median_ms = 50, token_delay_ms = 2 }
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tara.settings import ConfigError, describe_invalid, read_config_file

ErrorKind = Literal["rate_limit", "server_error", "unavailable", "reset", "hang", "cut"]
"""429 with Retry-After, 500, 503, TCP reset without a response, no answer until the
client leaves, and a response cut off part-way (some chunks, then the connection closes)."""

ERROR_KINDS: tuple[ErrorKind, ...] = (
    "rate_limit",
    "server_error",
    "unavailable",
    "reset",
    "hang",
    "cut",
)

Language = Literal["hi", "ta", "en"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Model):
    """Time to first token (lognormal around a median) and a fixed delay per further token."""

    ttft_median_ms: float = Field(150.0, ge=0)
    ttft_sigma: float = Field(0.35, ge=0, le=3)
    """Spread of ``ln(ttft)``; 0 makes every first token arrive after exactly the median."""
    ttft_max_ms: float = Field(5_000.0, ge=0)
    """Cap on a single draw, so the lognormal tail cannot stall a demo."""
    token_delay_ms: float = Field(10.0, ge=0)


def _default_kinds() -> dict[ErrorKind, float]:
    return {"rate_limit": 1.0, "server_error": 1.0, "unavailable": 1.0}


class Errors(_Model):
    """How often a request fails, and how (weights need not sum to 1)."""

    rate: float = Field(0.0, ge=0, le=1)
    kinds: dict[ErrorKind, float] = Field(default_factory=_default_kinds)
    retry_after_seconds: int = Field(1, ge=0)
    """Sent in the ``Retry-After`` header of injected 429s."""

    @model_validator(mode="after")
    def _some_kind_when_failing(self) -> Errors:
        if any(w < 0 for w in self.kinds.values()):
            msg = "error kind weights must not be negative"
            raise ValueError(msg)
        if self.rate > 0 and not any(w > 0 for w in self.kinds.values()):
            msg = "errors.rate > 0 needs at least one error kind with a positive weight"
            raise ValueError(msg)
        return self


class ModelBehaviour(_Model):
    """Everything that makes one sandbox model distinct."""

    quality: float = Field(0.75, ge=0, le=1)
    """0..1; shown in ``GET /v1/models`` and ``X-Sandbox-Quality`` (the demo turns it into
    student ratings)."""
    language: Language | None = None
    """Answer in this language whatever the request asks (else picked from the request)."""
    min_sentences: int = Field(3, ge=1, le=50)
    max_sentences: int = Field(5, ge=1, le=50)
    latency: Latency = Latency()
    errors: Errors = Errors()
    owned_by: str = "tara-sandbox"

    @model_validator(mode="after")
    def _sentence_range(self) -> ModelBehaviour:
        if self.min_sentences > self.max_sentences:
            msg = "min_sentences must not exceed max_sentences"
            raise ValueError(msg)
        return self


class FineTuningConfig(_Model):
    """How the sandbox's fine-tuning jobs "train" (see :mod:`tara.sandbox.fine_tuning`)."""

    training_seconds: float = Field(5.0, ge=0)
    """Wall-clock time from job creation to success; 0 finishes at once (tests)."""
    template_model: str = "tara-stable"
    """Served model whose behaviour (latency, errors) a fine-tuned model copies; its
    quality is the base quality when the job's base model is not served."""
    base_quality: float = Field(0.75, ge=0, le=1)
    """Quality before tuning when neither the base model nor the template is served."""
    max_quality_gain: float = Field(0.15, ge=0, le=1)
    """Bound on what tuning adds to the base quality."""
    half_gain_examples: int = Field(500, ge=1)
    """Training examples that earn half of ``max_quality_gain``."""
    min_training_examples: int = Field(10, ge=1)


class LoraAdaptersConfig(_Model):
    """How the sandbox emulates vLLM's runtime LoRA loading (see :mod:`tara.sandbox.lora`)."""

    enabled: bool = True
    """Serve ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``, as vLLM does with
    ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; false: 404, as without."""
    template_model: str = "tara-stable"
    """Served model whose behaviour (latency, errors, quality) a loaded adapter copies."""
    quality_gain: float = Field(0.1, ge=0, le=1)
    """Added to the template's quality (at most 1): what the sandbox says tuning bought."""


class SandboxConfig(_Model):
    """The whole sandbox: accepted keys and the models it serves."""

    api_keys: list[str] = Field(default_factory=list)
    """Accepted bearer keys; empty accepts any non-empty ``Authorization: Bearer`` key."""
    models: dict[str, ModelBehaviour] = Field(default_factory=dict)
    shutdown_timeout: float = Field(5.0, ge=0)
    fine_tuning: FineTuningConfig = FineTuningConfig()
    lora: LoraAdaptersConfig = LoraAdaptersConfig()


_ZERO = Latency(ttft_median_ms=0, ttft_sigma=0, token_delay_ms=0)


def default_models() -> dict[str, ModelBehaviour]:
    """The built-in models (see the module docstring)."""
    stable_latency = Latency(ttft_median_ms=150, ttft_sigma=0.35, token_delay_ms=10)
    return {
        "tara-stable": ModelBehaviour(quality=0.75, latency=stable_latency),
        "tara-candidate-good": ModelBehaviour(quality=0.88, latency=stable_latency),
        "tara-candidate-bad": ModelBehaviour(
            quality=0.4,
            min_sentences=2,
            max_sentences=4,
            latency=stable_latency,
            # No hangs by default: a hang ties a gateway connection up until its timeout.
            errors=Errors(
                rate=0.2,
                kinds={"rate_limit": 2, "server_error": 3, "unavailable": 2, "reset": 1, "cut": 2},
            ),
        ),
        "tara-candidate-slow": ModelBehaviour(
            quality=0.75,
            latency=Latency(ttft_median_ms=375, ttft_sigma=0.35, token_delay_ms=25),
        ),
        "bench-fast": ModelBehaviour(quality=0.75, min_sentences=1, max_sentences=1, latency=_ZERO),
    }


def default_config() -> SandboxConfig:
    """The built-in models, any non-empty key accepted."""
    return SandboxConfig(models=default_models())


def zero_latency(config: SandboxConfig) -> SandboxConfig:
    """The same config with every model answering at once (for fast tests)."""
    models = {name: m.model_copy(update={"latency": _ZERO}) for name, m in config.models.items()}
    return config.model_copy(update={"models": models})


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` laid over it, nested tables merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and key != "kinds":
            merged[key] = merge(old, value)
        else:
            # Error kinds are replaced whole: listing two kinds should mean only those two.
            merged[key] = value
    return merged


def describe(exc: ValidationError, origin: str) -> str:
    """One line per offending field, dotted path first."""
    return describe_invalid(exc, "sandbox models", origin)


def config_from_dict(data: dict[str, Any], origin: str = "dict") -> SandboxConfig:
    """Validate a config table; ``builtin_models = false`` drops the built-in models.

    Raises :class:`~tara.settings.ConfigError` naming every offending field.
    """
    data = dict(data)
    builtin = data.pop("builtin_models", True)
    if not isinstance(builtin, bool):
        msg = f"invalid sandbox models ({origin}):\n  builtin_models: must be true or false"
        raise ConfigError(msg)
    models = data.get("models", {})
    if not isinstance(models, dict):
        msg = f"invalid sandbox models ({origin}):\n  models: must be a table of model names"
        raise ConfigError(msg)
    base = {n: m.model_dump() for n, m in default_models().items()} if builtin else {}
    for name, table in models.items():
        base[name] = merge(base.get(name, {}), table) if isinstance(table, dict) else table
    try:
        return SandboxConfig.model_validate({**data, "models": base})
    except ValidationError as exc:
        raise ConfigError(describe(exc, origin)) from exc


def load_sandbox_config(path: Path | None) -> SandboxConfig:
    """The built-in config, or the built-ins merged with a TOML/YAML ``--models`` file."""
    if path is None:
        return default_config()
    return config_from_dict(read_config_file(path), f"file {path}")
