"""Upstream faults under load, injected through the sandbox's control routes.

Errors (500, 503), connection resets, 429s, stalled answers (nothing until the
client leaves) and a slow first token hit one request in five before its
first byte; the gateway retries within its deadline, so no student sees them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from chaos_support import (
    STABLE,
    UPSTREAM_KEY,
    Outcome,
    control,
    figures,
    gateway_env,
    running_gateway,
    sandbox,
    stored_rows,
    under_load,
)

pytestmark = pytest.mark.integration

FAULTS = {
    "errors": {
        "rate": 0.2,
        "kinds": {"server_error": 1, "unavailable": 1, "reset": 1, "rate_limit": 1, "hang": 1},
    },
    "latency": {"ttft_median_ms": 300, "ttft_sigma": 0.5, "token_delay_ms": 0},
}


@pytest.mark.timeout(60)
async def test_upstream_faults_before_the_first_byte_fail_no_student(tmp_path: Path) -> None:
    outcome = Outcome()
    async with sandbox() as upstream:
        env = gateway_env(
            upstream,
            tmp_path,
            upstream={
                "first_byte_timeout": 1.0,
                "retry_attempts": 8,
                "retry_deadline": 20,
                "retry_after_cap": 0.2,
            },
        )
        async with running_gateway(env, tmp_path) as gw:
            async with under_load(gw.base, outcome, count=8):
                await control(upstream, STABLE, FAULTS)
                await asyncio.sleep(6.0)
            retries = await gw.total("tara_upstream_retries_total")
            errors = await gw.total("tara_request_errors_total")
        async with httpx.AsyncClient(timeout=10) as client:
            stats = (
                await client.get(
                    upstream.removesuffix("/v1") + "/sandbox/stats",
                    headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
                )
            ).json()
    rows = {ix.request_id for ix in await stored_rows(f"sqlite:///{tmp_path / 'log.db'}")}
    assert outcome.failed == []
    assert errors == 0
    assert retries > 0
    assert set(outcome.answered) <= rows
    figures(
        "upstream_faults",
        answered=len(outcome.answered),
        failed=len(outcome.failed),
        upstream_retries=retries,
        sandbox_stats=stats,
        p99_latency_s=round(sorted(outcome.latencies)[int(len(outcome.latencies) * 0.99)], 2),
        rows_missing=len(set(outcome.answered) - rows),
    )
