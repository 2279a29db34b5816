"""Redis killed with SIGKILL under load: students keep being answered, nothing is lost.

The gateway uses a ``redis-server`` of the test's own on a free port (the
machine's Redis is shared and never touched). It has no persistence, so the
restarted server is empty, as after a real crash of a cache.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from chaos_support import (
    Gateway,
    Outcome,
    figures,
    gateway_env,
    redis_server,
    running_gateway,
    sandbox,
    start_redis,
    stored_rows,
    under_load,
)

from tara.serving import free_port
from waiting import eventually

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 3.0


async def routing_fresh(gw: Gateway) -> bool:
    return await gw.sample("tara_routing_table_healthy") == 1


@pytest.mark.timeout(60)
async def test_redis_sigkill_under_load_fails_no_student(tmp_path: Path) -> None:
    port = free_port()
    outcome = Outcome()
    second: subprocess.Popen[bytes] | None = None
    with redis_server(port, tmp_path) as first_redis:
        env = gateway_env(
            "",
            tmp_path,
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_namespace=f"chaos-{uuid.uuid4().hex[:8]}",
        )
        async with sandbox() as upstream:
            env["TARA_UPSTREAM__BASE_URL"] = upstream
            async with running_gateway(env, tmp_path) as gw:
                async with under_load(gw.base, outcome):
                    first_redis.send_signal(signal.SIGKILL)
                    first_redis.wait(10)
                    await asyncio.sleep(OUTAGE_SECONDS)
                    stale = await gw.sample("tara_routing_table_healthy")
                    second = start_redis(port, tmp_path)
                    await eventually(lambda: routing_fresh(gw), "routing table fresh")
                await asyncio.sleep(0.5)  # the sinks' next flush reaches the new server
                telemetry_dropped = await gw.total("tara_telemetry_dropped_total")
                log_dropped = await gw.total("tara_interactions_dropped_total")
    if second is not None:
        second.kill()
        second.wait(10)
    rows = {ix.request_id for ix in await stored_rows(f"sqlite:///{tmp_path / 'log.db'}")}
    assert outcome.failed == []
    assert stale == 0  # the gateway knew its table was stale, and served with it
    assert set(outcome.answered) <= rows
    assert (telemetry_dropped, log_dropped) == (0, 0)
    figures(
        "redis_sigkill",
        outage_s=OUTAGE_SECONDS,
        answered=len(outcome.answered),
        failed=len(outcome.failed),
        rated=len(outcome.rated),
        ratings_retried_after_503=outcome.rating_retries,
        rows_missing=len(set(outcome.answered) - rows),
        telemetry_dropped=telemetry_dropped,
    )
