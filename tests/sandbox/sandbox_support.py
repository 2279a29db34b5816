"""Configs and constants shared by the sandbox tests."""

from __future__ import annotations

from tara.sandbox import (
    Errors,
    Latency,
    ModelBehaviour,
    SandboxConfig,
    default_config,
    zero_latency,
)
from tara.sandbox.config import ERROR_KINDS

INSTANT = Latency(ttft_median_ms=0, ttft_sigma=0, token_delay_ms=0)
KEY = "sk-test"


def failing_models() -> dict[str, ModelBehaviour]:
    """``fail-<kind>``: a zero-latency model that always fails in that one way."""
    return {
        f"fail-{kind}": ModelBehaviour(
            latency=INSTANT,
            errors=Errors(rate=1.0, kinds={kind: 1.0}, retry_after_seconds=7),
        )
        for kind in ERROR_KINDS
    }


def fast_config() -> SandboxConfig:
    """The built-in models without latency, plus the always-failing ones."""
    config = zero_latency(default_config())
    return config.model_copy(update={"models": {**config.models, **failing_models()}})
