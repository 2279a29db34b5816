"""The running sandbox's mutable state: models, keys, counters and occurrence counts."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tara.sandbox.config import SandboxConfig
from tara.sandbox.errors import ApiError, json_object, unauthorized
from tara.sandbox.registry import ModelRegistry

MAX_TRACKED_REQUESTS = 1_000_000
"""Distinct request contents remembered for occurrence counts; beyond this the counts
restart (a benchmark with endless unique prompts must not grow memory forever)."""


@dataclass
class ModelStats:
    """What one model saw."""

    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view; ``errors_injected`` sums the non-``ok`` outcomes."""
        return {
            "requests": self.requests,
            "outcomes": dict(sorted(self.outcomes.items())),
            "errors_injected": sum(n for k, n in self.outcomes.items() if k != "ok"),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclass
class SandboxStats:
    """Counters behind ``GET /sandbox/stats``."""

    models: dict[str, ModelStats] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    """Requests refused before reaching a model, by reason (bad_request, unauthorized ...)."""
    active: int = 0
    """Chat requests being handled right now (hangs included)."""

    def model(self, name: str) -> ModelStats:
        """The counters of ``name``, created on first use."""
        stats = self.models.get(name)
        if stats is None:
            stats = self.models[name] = ModelStats()
        return stats

    def as_json(self) -> dict[str, Any]:
        """JSON-ready view of every counter."""
        return {
            "models": {name: s.as_json() for name, s in sorted(self.models.items())},
            "rejected": dict(sorted(self.rejected.items())),
            "active": self.active,
        }


class Occurrences:
    """How many times each request digest was seen (bounded, see MAX_TRACKED_REQUESTS)."""

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}

    def next(self, digest: bytes) -> int:
        """The 0-based occurrence number of this request, counting it."""
        count = self._seen.get(digest, 0)
        if count == 0 and len(self._seen) >= MAX_TRACKED_REQUESTS:
            self._seen.clear()
        self._seen[digest] = count + 1
        return count

    def clear(self) -> None:
        """Forget every request, so the next sequence replays from the start."""
        self._seen.clear()


@dataclass
class SandboxState:
    """Everything the handlers share."""

    seed: int
    registry: ModelRegistry
    api_keys: frozenset[str]
    stats: SandboxStats = field(default_factory=SandboxStats)
    occurrences: Occurrences = field(default_factory=Occurrences)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at shutdown, so hanging requests let go."""

    @classmethod
    def from_config(cls, config: SandboxConfig, seed: int) -> SandboxState:
        """Fresh state for a config."""
        return cls(
            seed=seed, registry=ModelRegistry(config.models), api_keys=frozenset(config.api_keys)
        )

    def key_accepted(self, authorization: str | None) -> str | None:
        """None if the header carries an accepted bearer key, else why not."""
        if not authorization:
            return "You didn't provide an API key. Use 'Authorization: Bearer YOUR_KEY'."
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return "Malformed Authorization header; expected 'Bearer YOUR_KEY'."
        if self.api_keys and not any(
            secrets.compare_digest(key.encode(), k.encode()) for k in self.api_keys
        ):
            return "Incorrect API key provided."
        return None


STATE: web.AppKey[SandboxState] = web.AppKey("tara_sandbox_state", SandboxState)


def sandbox_state(app: web.Application) -> SandboxState:
    """The state of an app built by :func:`tara.sandbox.app.build_sandbox_app`."""
    return app[STATE]


def refuse_unauthorized(request: web.Request) -> web.Response | None:
    """A 401 response if the request lacks an accepted key, else None."""
    state = request.app[STATE]
    problem = state.key_accepted(request.headers.get("Authorization"))
    if problem is None:
        return None
    state.stats.rejected["unauthorized"] += 1
    return unauthorized(problem).response()


async def object_body(request: web.Request, not_object: ApiError) -> dict[str, Any] | web.Response:
    """The JSON object an authorized request carries, or the response refusing it.

    A 401 without an accepted key, OpenAI's invalid-JSON 400 for a body that
    does not parse, ``not_object`` for JSON that is not an object.
    """
    refused = refuse_unauthorized(request)
    if refused is not None:
        return refused
    body = json_object(await request.read(), not_object)
    return body.response() if isinstance(body, ApiError) else body
