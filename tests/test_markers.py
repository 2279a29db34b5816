"""A test that uses the Redis or PostgreSQL fixtures must say so with its marker."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).parent

INNER = """
import pytest

async def test_unmarked_redis(redis_client):
    pass

async def test_unmarked_postgres(pg_schema):
    pass

@pytest.mark.redis
async def test_marked(redis_client):
    assert await redis_client.ping()
"""


@pytest.mark.redis
def test_the_fixtures_fail_a_test_without_its_marker(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "markers =\n    redis: Redis\n    postgres: PostgreSQL\n"
    )
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_unmarked_redis uses the real Redis (redis_client) but is not marked "
            "@pytest.mark.redis*",
            "*test_unmarked_postgres uses the real PostgreSQL (pg_schema) but is not marked "
            "@pytest.mark.postgres*",
        ]
    )
