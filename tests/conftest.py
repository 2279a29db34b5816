"""Shared fixtures: real Redis and PostgreSQL, isolated per test.

Tests share the machine's servers with each other and with other runs, so
nothing here flushes a whole database: each test gets its own Redis key
namespace and its own PostgreSQL schema, removed afterwards. A test that uses
the Redis or PostgreSQL fixtures must carry the ``redis`` / ``postgres``
marker (so ``-m "not redis"`` really leaves Redis alone); the fixtures fail a
test that does not.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Generator

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings

from dependencies import MISSING_DEPENDENCY, in_ci
from tcp_relay import REDIS_URL, RedisProxy

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"

# Timings belong in bench/: on a loaded machine an example may take longer than Hypothesis's
# default 200 ms deadline, or generating it may look slow, without anything being wrong.
settings.register_profile("tara", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tara")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI, a test skipped for a missing dependency fails (see ``tests/dependencies.py``)."""
    report = yield
    if report.skipped and in_ci() and MISSING_DEPENDENCY in str(report.longrepr):
        report.outcome = "failed"
    return report


def require_marker(request: pytest.FixtureRequest, marker: str, what: str) -> None:
    """Fail the requesting test unless it carries ``marker`` (directly, or via its module)."""
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(f"{request.node.nodeid} uses {what} but is not marked @pytest.mark.{marker}")


@pytest.fixture
def namespace() -> str:
    """A Redis key namespace no other test uses."""
    return f"tara-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(
    namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[aioredis.Redis]:
    """A client of the real Redis; keys under ``namespace`` are deleted afterwards."""
    require_marker(request, "redis", "the real Redis (redis_client)")
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - the machine runs Redis
        pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
    yield client
    keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def pg_schema(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """``(dsn, schema)``: a fresh schema in the real PostgreSQL, dropped afterwards."""
    require_marker(request, "postgres", "the real PostgreSQL (pg_schema)")
    import asyncpg

    schema = f"tara_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield POSTGRES_DSN, schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.fixture
async def redis_proxy(request: pytest.FixtureRequest) -> AsyncIterator[RedisProxy]:
    """A started :class:`RedisProxy` (to the real Redis); stopped afterwards."""
    require_marker(request, "redis", "the real Redis (redis_proxy)")
    proxy = RedisProxy()
    await proxy.start()
    yield proxy
    await proxy.stop()
