"""Fixtures for the sandbox tests: zero-latency sandboxes on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from sandbox_support import KEY, fast_config

from tara.sandbox import running_sandbox


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    """Base URL (``.../v1``) of a fast sandbox with seed 0."""
    async with running_sandbox(fast_config(), seed=0) as url:
        yield url


@pytest.fixture
async def client(sandbox_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real OpenAI SDK pointed at the sandbox, retries off."""
    async with openai.AsyncOpenAI(base_url=sandbox_url, api_key=KEY, max_retries=0) as sdk:
        yield sdk
