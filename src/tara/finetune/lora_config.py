"""Settings of the open-weight LoRA training backend (``Settings.finetune.lora``).

The backend trains a LoRA adapter on ``finetune.base_model`` (a local
directory or a model id already in the local Hugging Face cache) and loads
it into a vLLM server through its runtime LoRA endpoints. The job's
hyperparameters are the same settings the OpenAI backend sends; these
fields say what the OpenAI API decides by itself (learning rate, adapter
shape, device) and where files and the serving side live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class LoraSettings(BaseModel):
    """How the LoRA backend trains, where it keeps its jobs, and which vLLM serves the result."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    work_dir: Path = Path("tara-data/lora")
    """Uploaded files (``files/``), job state and logs (``jobs/``) and trained adapters
    (``adapters/<model name>/``)."""
    base_learning_rate: float = Field(2e-3, gt=0)
    """The learning rate is ``finetune.learning_rate_multiplier`` × this: the default
    multiplier 0.1 gives 2e-4, the rate commonly used for LoRA on 1–13B models."""
    rank: int = Field(16, ge=1, le=256)
    """LoRA rank ``r`` (vLLM must be started with ``--max-lora-rank`` at least this)."""
    alpha: int = Field(32, ge=1)
    """LoRA scaling ``alpha`` (the update is scaled by ``alpha / rank``)."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the LoRA layers while training."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Layers that get an adapter: module names, or every linear layer but the output."""
    micro_batch_size: int = Field(4, ge=1)
    """Examples per forward pass; ``finetune.batch_size`` is reached by gradient
    accumulation, so a large batch does not need a large GPU."""
    max_length: int = Field(2048, ge=16)
    """Tokens per example (prompt and answer); longer examples are cut at the end."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """``auto``: the GPU when PyTorch sees one (bf16 where supported), else the CPU."""
    logging_steps: int = Field(10, ge=1)
    """Optimiser steps between two progress events (step, training loss)."""
    eval_steps: int = Field(50, ge=1)
    """Optimiser steps between two validation-loss measurements (and one at the end)."""
    seed: int = Field(42, ge=0)
    """Seed of the adapter's initialisation and the data order."""
    server_url: str | None = None
    """vLLM server (``--enable-lora``, ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) that loads
    trained adapters; None: ``upstream.base_url``, the server the gateway routes to."""
    server_api_key: SecretStr | None = None
    """Key for ``server_url`` (vLLM's ``--api-key``); None: ``upstream.api_key``."""
    server_adapter_dir: str | None = None
    """Where the vLLM server sees ``work_dir/adapters`` (a shared volume mounted
    elsewhere); None: the same path."""
    load_timeout: float = Field(300.0, gt=0)
    """Seconds a finished training keeps retrying to load its adapter into a server
    that is unreachable or busy, before the job fails."""
