"""PostgreSQL faults under load: a cut, down at start-up, and a gateway killed mid-outage.

The database itself stays up (it is shared); a TCP relay in front of it is
what dies, as a partition or a crashed server looks to the gateway.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from chaos_support import (
    Gateway,
    Outcome,
    figures,
    gateway_env,
    running_gateway,
    sandbox,
    stored_rows,
    under_load,
)

from tara.settings import Settings
from tcp_relay import TcpRelay
from waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

OUTAGE_SECONDS = 4.0


def pg_env(upstream: str, tmp: Path, relay: TcpRelay, schema: str) -> dict[str, str]:
    return gateway_env(
        upstream,
        tmp,
        database_url=f"postgresql://postgres@127.0.0.1:{relay.port}/test",
        telemetry={"pg_schema": schema},
    )


async def rows_by_id(dsn: str, schema: str) -> dict[str, object]:
    settings = Settings(telemetry={"pg_schema": schema})
    return {ix.request_id: ix for ix in await stored_rows(dsn, settings)}


@pytest.mark.timeout(60)
async def test_a_postgres_cut_under_load_loses_nothing(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    dsn, schema = pg_schema
    relay = TcpRelay(5432)
    await relay.start()
    outcome = Outcome()
    try:
        async with (
            sandbox() as upstream,
            running_gateway(pg_env(upstream, tmp_path, relay, schema), tmp_path) as gw,
        ):
            async with under_load(gw.base, outcome):
                await relay.stop()
                await asyncio.sleep(OUTAGE_SECONDS)
                spooled = await gw.sample("tara_interaction_spool_records")
                assert await gw.sample("tara_interaction_log_up") == 0
                await relay.start()
            await eventually(lambda: _log_up(gw), "the spool replayed", within=30)
            dropped = await gw.total("tara_interactions_dropped_total")
    finally:
        await relay.stop()
    rows = await rows_by_id(dsn, schema)
    assert outcome.failed == []
    assert dropped == 0
    assert set(outcome.answered) <= set(rows)
    assert all(rows[rid].rating == 4 for rid in outcome.rated)  # type: ignore[attr-defined]
    figures(
        "postgres_cut",
        outage_s=OUTAGE_SECONDS,
        answered=len(outcome.answered),
        rated=len(outcome.rated),
        failed=len(outcome.failed),
        spooled_during_outage=spooled,
        rows_missing=len(set(outcome.answered) - set(rows)),
        dropped=dropped,
    )


async def _log_up(gw: Gateway) -> bool:
    return await gw.sample("tara_interaction_log_up") == 1


@pytest.mark.timeout(60)
async def test_postgres_down_at_start_up_serves_students_and_writes_once_back(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    dsn, schema = pg_schema
    relay = TcpRelay(5432)  # not started: the database is unreachable
    outcome = Outcome()
    try:
        async with (
            sandbox() as upstream,
            running_gateway(pg_env(upstream, tmp_path, relay, schema), tmp_path) as gw,
        ):
            async with under_load(gw.base, outcome, count=4):
                await asyncio.sleep(1.0)
                assert await gw.sample("tara_interaction_log_up") == 0
            assert "interaction log not ready" in gw.output()
            assert outcome.answered
            assert outcome.failed == []
            waiting = await gw.sample("tara_interaction_spool_records")
            await relay.start()  # the database comes back: migrate, then replay
            await eventually(lambda: _log_up(gw), "migrated and replayed", within=30)
            dropped = await gw.total("tara_interactions_dropped_total")
    finally:
        await relay.stop()
    rows = await rows_by_id(dsn, schema)
    assert set(outcome.answered) <= set(rows)
    assert dropped == 0
    figures(
        "postgres_down_at_start",
        answered=len(outcome.answered),
        failed=len(outcome.failed),
        spooled=waiting,
        rows_missing=len(set(outcome.answered) - set(rows)),
    )


@pytest.mark.timeout(60)
async def test_a_spool_left_by_a_killed_gateway_is_replayed_at_restart(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    dsn, schema = pg_schema
    relay = TcpRelay(5432)
    await relay.start()
    outcome = Outcome()
    try:
        async with sandbox() as upstream:
            env = pg_env(upstream, tmp_path, relay, schema)
            first = Gateway(env, tmp_path, "first")
            try:
                await first.ready()
                await relay.stop()  # an outage...
                async with under_load(first.base, outcome, count=4):
                    await asyncio.sleep(1.0)
                expected = len(outcome.answered) + len(outcome.rated)

                async def all_spooled() -> bool:
                    return await first.sample("tara_interaction_spool_records") >= expected

                await eventually(all_spooled, "every record spooled", within=20)
                first.signal(signal.SIGKILL)  # ...and the gateway dies in it
                assert await first.wait() == -signal.SIGKILL
            finally:
                first.stop_now()
            await relay.start()
            async with running_gateway(env, tmp_path, "second") as second:
                await eventually(lambda: _log_up(second), "the spool replayed", within=30)
                dropped = await second.total("tara_interactions_dropped_total")
    finally:
        await relay.stop()
    rows = await rows_by_id(dsn, schema)
    assert outcome.failed == []
    assert set(outcome.answered) <= set(rows)
    assert all(rows[rid].rating == 4 for rid in outcome.rated)  # type: ignore[attr-defined]
    assert dropped == 0
    figures(
        "kill9_during_postgres_outage",
        answered=len(outcome.answered),
        rated=len(outcome.rated),
        rows_missing=len(set(outcome.answered) - set(rows)),
        dropped=dropped,
    )
