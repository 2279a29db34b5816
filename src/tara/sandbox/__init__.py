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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "build_sandbox_app": "app",
    "Errors": "config",
    "Latency": "config",
    "ModelBehaviour": "config",
    "SandboxConfig": "config",
    "default_config": "config",
    "load_sandbox_config": "config",
    "zero_latency": "config",
    "ModelRegistry": "registry",
    "running_sandbox": "server",
    "serving": "server",
    "sandbox_state": "state",
}
"""Where each public name lives. They are imported on first use, so that importing a
submodule (``tara sandbox``'s options, for instance) does not load the whole server."""

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


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
