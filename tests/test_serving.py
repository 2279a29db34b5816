"""Ports for the tests' and benchmarks' servers (none that a connection may take first),
and the private ``redis-server`` they start."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tara.serving import ephemeral_ports, free_port, running_server, start_redis


def test_free_ports_lie_below_the_range_the_kernel_gives_outgoing_connections() -> None:
    """CI once lost a whole module to it: a gateway's port, picked with ``bind(0)``, was
    in the ephemeral range, and an outgoing connection took it before uvicorn bound it
    (``[Errno 98] address already in use``, uvicorn's exit status 3)."""
    low, _high = ephemeral_ports()
    ports = [free_port() for _ in range(300)]
    assert all(1024 <= p < low for p in ports), sorted(ports)[-5:]
    assert len(set(ports)) == len(ports), "a port was handed out twice"


def test_the_ephemeral_range_is_read_from_the_kernel() -> None:
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
    low, high = (int(p) for p in text.split())
    assert ephemeral_ports() == (low, high)


def test_a_port_in_use_is_never_handed_out() -> None:
    taken: list[socket.socket] = []
    try:
        for _ in range(50):
            port = free_port()
            sock = socket.socket()
            sock.bind(("127.0.0.1", port))
            sock.listen()
            taken.append(sock)
        in_use = {s.getsockname()[1] for s in taken}
        assert all(free_port() not in in_use for _ in range(300))
    finally:
        for sock in taken:
            sock.close()


async def _hello(_request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.mark.parametrize("port", [None, "free"])
async def test_running_server_answers_on_its_port(port: str | None) -> None:
    app = Starlette(routes=[Route("/", _hello)])
    chosen = free_port() if port == "free" else None
    async with running_server(app, port=chosen) as url, httpx.AsyncClient() as client:
        if chosen is not None:
            assert url == f"http://127.0.0.1:{chosen}"
        assert (await client.get(url + "/")).text == "hello"


def _info(port: int) -> bytes:
    return subprocess.run(
        ["redis-cli", "-p", str(port), "info", "server"], capture_output=True, check=True
    ).stdout


def test_a_private_redis_answers_on_its_port_and_a_second_one_there_is_refused(
    tmp_path: Path,
) -> None:
    """The second cannot bind the port; the first one's answers must not pass for its own."""
    port = free_port()
    first = start_redis(port, tmp_path)
    try:
        assert f"process_id:{first.pid}".encode() in _info(port)
        with pytest.raises(RuntimeError, match=f"redis-server on port {port} did not answer"):
            start_redis(port, tmp_path)
        assert f"process_id:{first.pid}".encode() in _info(port)
        assert list(tmp_path.iterdir()) == []  # nothing on disk
    finally:
        first.kill()
        first.wait(10)
