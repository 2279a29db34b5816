"""``tara rollout`` against a real gateway server (``gateway_from_settings``, Redis state)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tara.cli import main
from tara.gateway.server import gateway_from_settings
from tara.rollout.rollout_cli import base_url, duration, show_rollout
from tara.rollout.routing import RoutingTable
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.serving import free_port, running_server
from tara.settings import Settings, load_settings
from tara.state import open_state
from tcp_relay import REDIS_URL

ADMIN_KEY = "sk-admin-cli-test"


def write_config(tmp_path: Path, namespace: str, port: int, admin_key: str = ADMIN_KEY) -> Path:
    config = tmp_path / "tara.toml"
    config.write_text(
        f"""
state_backend = "redis"
redis_url = "{REDIS_URL}"
redis_namespace = "{namespace}"
[server]
host = "127.0.0.1"
port = {port}
[auth]
admin_key = "{admin_key}"
client_keys = ["sk-client-cli-test"]
[upstream]
base_url = "http://127.0.0.1:{free_port()}/v1"
[telemetry]
sqlite_path = "{tmp_path / "interactions.db"}"
[[rollout.stages]]
percent = 10
duration = 3600
[[rollout.stages]]
percent = 50
duration = 3600
""",
        encoding="utf-8",
    )
    return config


class Cli:
    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    async def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, ["rollout", *argv, "--config", str(self.config)])
        out, err = self.capsys.readouterr()
        return code, out, err

    async def json(self, *argv: str) -> Any:
        code, out, err = await self.run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
async def cli(
    tmp_path: Path,
    namespace: str,
    redis_client: aioredis.Redis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Cli]:
    monkeypatch.setenv("COLUMNS", "250")  # rich tables unwrapped, so ids stay whole
    port = free_port()
    config = write_config(tmp_path, namespace, port)
    app = gateway_from_settings(load_settings(config), registry=CollectorRegistry())
    async with running_server(app, port=port):
        yield Cli(config, capsys)


@pytest.mark.redis
async def test_start_status_and_transitions(
    cli: Cli, redis_client: aioredis.Redis, namespace: str
) -> None:
    started = await cli.json("start", "tara-tutor", "--candidate", "ft-math", "--subject", "math")
    rid = started["id"]
    assert (started["phase"], started["segment"], started["weight_percent"]) == (
        "progressing",
        "math:*",
        10.0,
    )
    table = await RedisRoutingStore(redis_client, namespace).load_table()
    assert isinstance(table, RoutingTable)
    assert [c.rollout_id for c in table.tracks["tara-tutor"].canaries] == [rid]

    code, out, _ = await cli.run("status")
    assert code == 0
    assert rid in out
    assert "math:*" in out
    assert "10% → 50%" in out
    code, out, _ = await cli.run("status", rid)
    assert code == 0
    assert "Canary vs stable: inconclusive" in out  # live numbers from the gateway's windows
    assert "start" in out

    promoted = await cli.json("promote", rid, "--reason", "fast track")
    assert (promoted["stage"], promoted["weight_percent"]) == (2, 50.0)
    assert (await cli.json("pause", rid))["phase"] == "paused"
    assert (await cli.json("resume", rid))["phase"] == "progressing"
    back = await cli.json("rollback", rid, "--reason", "students confused")
    assert back["phase"] == "rolled_back"
    assert back["history"][-1]["reason"] == "students confused"
    table = await RedisRoutingStore(redis_client, namespace).load_table()
    assert table is not None
    assert table.tracks["tara-tutor"].canaries == ()
    listed = await cli.json("status", "--active")
    assert listed["data"] == []


@pytest.mark.redis
async def test_refusals_exit_1_with_the_message(cli: Cli) -> None:
    rid = (await cli.json("start", "tara-tutor", "--candidate", "ft-1"))["id"]
    code, _, err = await cli.run("start", "tara-tutor", "--candidate", "ft-2", "--language", "hi")
    assert code == 1
    assert f"409: track tara-tutor already has rollout {rid}" in err
    await cli.json("rollback", rid)
    code, _, err = await cli.run("promote", rid)
    assert (code, err.strip()) == (
        1,
        f"tara rollout promote: 409: cannot promote: rollout {rid} is rolled_back",
    )
    code, _, err = await cli.run("status", "ro-missing")
    assert code == 1
    assert "404: no rollout with id 'ro-missing'" in err
    code, _, err = await cli.run("start", "gpt-4", "--candidate", "ft-1")
    assert code == 1
    assert "422: unknown track 'gpt-4'" in err


@pytest.mark.redis
async def test_wrong_admin_key_is_refused(cli: Cli, tmp_path: Path, namespace: str) -> None:
    port = load_settings(cli.config).server.port
    other = tmp_path / "wrong"
    other.mkdir()
    cli.config = write_config(other, namespace, port, admin_key="sk-wrong")
    code, _, err = await cli.run("status")
    assert code == 1
    assert "401" in err


@pytest.mark.redis
async def test_unreachable_gateway_exits_2(cli: Cli) -> None:
    code, _, err = await cli.run("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2
    assert "cannot reach the gateway" in err


@pytest.mark.redis
async def test_server_error_exits_2(cli: Cli) -> None:
    async def unavailable(_request: Request) -> Response:
        body = {"error": {"message": "rollout state unavailable: down", "type": "server_error"}}
        return JSONResponse(body, status_code=503)

    app = Starlette(routes=[Route("/admin/rollouts", unavailable)])
    async with running_server(app) as url:
        code, _, err = await cli.run("status", "--url", url)
    assert code == 2
    assert "503: rollout state unavailable: down" in err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (59.6, "1m 0s"),
        (3 * 3600 + 125, "3h 2m"),
        (3 * 86400 + 7200, "3d 2h"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("url", "host", "expected"),
    [
        (None, "127.0.0.1", "http://127.0.0.1:9000"),
        (None, "0.0.0.0", "http://127.0.0.1:9000"),
        ("http://gw.internal:8080/", "0.0.0.0", "http://gw.internal:8080"),
    ],
)
def test_base_url(url: str | None, host: str, expected: str) -> None:
    settings = Settings(server={"host": host, "port": 9000})
    assert base_url(argparse.Namespace(url=url), settings) == expected


def test_status_rendering_of_unreadable_live_numbers_and_an_empty_list() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    rollout = {
        "id": "ro-1",
        "track": "t",
        "segment": "all",
        "phase": "progressing",
        "stage": 1,
        "stages": 3,
        "weight_percent": 10.0,
        "next_weight_percent": 25.0,
        "time_left_seconds": 90.0,
        "candidate_model": "ft",
        "stable_model": "st",
        "live": {"error": "stats unreadable: TimeoutError: "},
    }
    show_rollout(console, rollout)
    assert "live numbers: stats unreadable" in out.getvalue()
    assert "1m 30s" in out.getvalue()


@pytest.mark.redis
async def test_status_with_no_rollouts(cli: Cli) -> None:
    code, out, _ = await cli.run("status")
    assert (code, out.strip()) == (0, "no rollouts")


async def test_start_on_a_gateway_no_controller_can_see_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tara serve`` on memory state + ``tara rollout start``: nothing would ever judge it."""
    port = free_port()
    config = tmp_path / "tara.toml"
    text = write_config(tmp_path, "unused", port).read_text(encoding="utf-8")
    config.write_text(text.replace('state_backend = "redis"', 'state_backend = "memory"'))
    app = gateway_from_settings(load_settings(config), registry=CollectorRegistry())
    async with running_server(app, port=port):
        cli = Cli(config, capsys)
        code, _, err = await cli.run("start", "tara-tutor", "--candidate", "ft-1")
        listed = await cli.json("status")
    assert code == 1
    assert "409: no controller can judge rollouts on this gateway" in err
    assert "set TARA_REDIS_URL" in err
    assert listed["data"] == []


@pytest.mark.redis
async def test_start_warns_when_no_controller_leads_on_shared_state(
    cli: Cli, redis_client: aioredis.Redis, namespace: str
) -> None:
    code, _, err = await cli.run("start", "tara-tutor", "--candidate", "ft-1", "--language", "hi")
    assert code == 0
    assert f"warning: no controller leads on namespace '{namespace}'" in err
    lease = open_state(load_settings(cli.config), redis=redis_client).new_lease(10.0)
    assert await lease.acquire()  # a controller runs now
    code, _, err = await cli.run("start", "tara-tutor", "--candidate", "ft-2", "--language", "ta")
    await lease.release()
    assert (code, err) == (0, "")
