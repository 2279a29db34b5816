"""``tara sandbox``: config errors, a real process serving until SIGTERM, busy ports."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tara.cli import build_parser, main
from tara.sandbox.server import sandbox_command
from tara.serving import free_port
from tara.settings import load_settings

AUTH = {"Authorization": "Bearer sk-x"}


def test_bad_models_file_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "models.toml"
    path.write_text("[models.tara-stable]\nqualty = 0.5\n", encoding="utf-8")
    assert main(["sandbox", "--models", str(path)]) == 2
    err = capsys.readouterr().err
    assert "models.tara-stable.qualty: Extra inputs are not permitted" in err


def test_busy_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = build_parser().parse_args(["sandbox", "--port", str(port), "--seed", "1"])
        assert sandbox_command(args, load_settings()) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


async def _wait_until_up(
    http: httpx.AsyncClient, url: str, proc: asyncio.subprocess.Process
) -> None:
    for _ in range(300):
        if proc.returncode is not None:
            break
        try:
            await http.get(url, headers=AUTH)
        except httpx.TransportError:
            await asyncio.sleep(0.05)
        else:
            return
    pytest.fail("the sandbox did not come up")


async def _wait_until_hanging(http: httpx.AsyncClient, stats_url: str) -> None:
    for _ in range(300):
        if (await http.get(stats_url, headers=AUTH)).json()["active"]:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the hanging request never arrived")


async def test_process_serves_until_sigterm_and_releases_hangs(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "api_keys: [sk-x]\nmodels:\n  hanger:\n    errors: {rate: 1, kinds: {hang: 1}}\n"
        "    latency: {ttft_median_ms: 0}\n",
        encoding="utf-8",
    )
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tara",
        "sandbox",
        "--port",
        str(port),
        "--seed",
        "5",
        "--models",
        str(path),
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await _wait_until_up(http, f"{base}/models", proc)
            models = (await http.get(f"{base}/models", headers=AUTH)).json()["data"]
            assert {"hanger", "tara-stable", "bench-fast"} <= {m["id"] for m in models}
            chat = await http.post(
                f"{base}/chat/completions",
                headers=AUTH,
                json={"model": "bench-fast", "messages": [{"role": "user", "content": "Hi"}]},
            )
            assert chat.status_code == 200
            hanging = asyncio.create_task(
                http.post(
                    f"{base}/chat/completions",
                    headers=AUTH,
                    json={"model": "hanger", "messages": [{"role": "user", "content": "Hi"}]},
                )
            )
            await _wait_until_hanging(http, f"{base.removesuffix('/v1')}/sandbox/stats")
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.TransportError):
                await hanging
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert f"sandbox on http://127.0.0.1:{port}/v1 (seed 5)" in log
    assert "shutting down" in log


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["sandbox"])
    assert isinstance(args, argparse.Namespace)
    assert (args.host, args.port, args.seed, args.models) == ("127.0.0.1", 8081, None, None)
