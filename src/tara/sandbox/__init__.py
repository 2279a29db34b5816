"""A local OpenAI-compatible upstream for development, tests, demos and benchmarks.

``tara sandbox`` serves ``POST /v1/chat/completions`` (streamed and not) and
``GET /v1/models`` like OpenAI does, answering with short tutoring answers in
Hindi, Tamil or English. Each model has a configurable behaviour (latency,
injected errors, quality; see :mod:`tara.sandbox.config`), everything is
reproducible under a seed, and ``/sandbox/...`` routes change models and
show counters while it runs (see :mod:`tara.sandbox.control`).

Authentication: every route needs ``Authorization: Bearer <key>``. With
``api_keys`` empty (the default) any non-empty key is accepted; list keys in
the ``--models`` file to accept only those.

For tests::

    async with running_sandbox(seed=1) as base_url:  # built-in models, zero latency
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test")
"""

from tara.sandbox.app import build_sandbox_app
from tara.sandbox.config import (
    Errors,
    Latency,
    ModelBehaviour,
    SandboxConfig,
    default_config,
    load_sandbox_config,
    zero_latency,
)
from tara.sandbox.registry import ModelRegistry
from tara.sandbox.server import running_sandbox, serving
from tara.sandbox.state import sandbox_state

__all__ = [
    "Errors",
    "Latency",
    "ModelBehaviour",
    "ModelRegistry",
    "SandboxConfig",
    "build_sandbox_app",
    "default_config",
    "load_sandbox_config",
    "running_sandbox",
    "sandbox_state",
    "serving",
    "zero_latency",
]
