"""Running ASGI apps under uvicorn: the CLI's servers and the tests' real servers.

``serve_forever`` is what ``tara serve`` calls: uvloop, httptools, graceful
shutdown with a timeout, the garbage collector (:mod:`tara.garbage`) and
glibc's allocator tuned for a long-running server. ``running_server`` starts a real
uvicorn server on a free loopback port inside the current event loop, for
integration tests and benchmarks; ``start_redis`` a private ``redis-server``
for the tests and benchmarks that need one of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import uvicorn

from tara.garbage import GC_GROWTH_LIMIT, GC_INTERVAL, tune_gc

EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000
"""Ports below are left to services that expect theirs (Redis, PostgreSQL, Prometheus)."""
_handed_out: set[int] = set()
_random = random.Random()


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default)."""
    try:
        low, high = EPHEMERAL_PORTS.read_text(encoding="ascii").split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on, for a server started next.

    It lies below the kernel's ephemeral range, so no outgoing connection
    (to Redis, to an upstream) can be given it before the server binds it, and
    it is never handed out twice by this process. A port from ``bind(0)`` is
    in that range: CI once saw a gateway fail to start on one.
    """
    low, _high = ephemeral_ports()
    for _ in range(1000):
        port = _random.randrange(LOWEST_PORT, max(low, LOWEST_PORT + 1))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    msg = f"no free port on {host} between {LOWEST_PORT} and {low}"
    raise RuntimeError(msg)


def uvicorn_config(
    app: Any, host: str, port: int, shutdown_timeout: float = 10.0
) -> uvicorn.Config:
    """The uvicorn settings every Tara server uses."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
        timeout_keep_alive=30,
        backlog=4096,
        # Nothing reads the client's address, so X-Forwarded-* need no rewriting per
        # request; and responses need not name the server software.
        proxy_headers=False,
        server_header=False,
    )


M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter for the size from which blocks are mmapped."""
MMAP_THRESHOLD = 128 * 1024
"""Blocks from this size get their own mapping, given back when freed (glibc's default)."""


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at its default, 128 KiB; whether the allocator took it.

    By default glibc raises the threshold to the size of any mmapped block
    that is freed. The memory request index's table (a dict of 50,000 ids,
    a few MiB) is reallocated as ids come and go, so after the first one the
    threshold sat at a few MiB, every later table came from the heap, and the
    small allocations around it kept the freed space from being given back:
    in a 5-minute soak at full load the bytes free inside malloc's arenas
    grew from 2.8 to 7.4 MiB with RSS creeping along (+4.6 MiB after every
    bound was full), against 1.5 to 2.3 MiB (+2.7) with the threshold fixed
    (``bench/bench_soak.py --tracemalloc --set TARA_SOAK_TRACEMALLOC_FRAMES=0``
    reports ``mallinfo2``). A fixed threshold also ends the dynamic trim
    threshold; large blocks cost a ``mmap``/``munmap`` each, which happens a
    few times a minute. Elsewhere than glibc (musl) nothing changes.
    """
    import ctypes  # ~0.4 MiB; only servers load it

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class _DrainingServer(uvicorn.Server):
    """uvicorn, except that a signal it shut down for gracefully is not raised again.

    uvicorn re-raises SIGTERM once it has drained, so the process ended "killed
    by SIGTERM" (exit status 143) after a clean shut-down; orchestrators and
    supervisors read that as a failure.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def serve_forever(
    app: Any,
    host: str,
    port: int,
    shutdown_timeout: float = 10.0,
    *,
    gc_interval: float = GC_INTERVAL,
    gc_growth_limit: int = GC_GROWTH_LIMIT,
) -> None:
    """Run ``app`` until SIGINT/SIGTERM, drain for up to ``shutdown_timeout`` s, then return.

    Cyclic garbage is collected every ``gc_interval`` seconds or after
    ``gc_growth_limit`` objects, never automatically (:mod:`tara.garbage`).
    """
    tune_malloc()
    collector = tune_gc(gc_interval, gc_growth_limit)
    try:
        _DrainingServer(uvicorn_config(app, host, port, shutdown_timeout)).run()
    finally:
        collector.stop()
        gc.enable()


@contextlib.asynccontextmanager
async def running_server(
    app: Any, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on a real socket in this event loop; yields its base URL.

    Without ``port`` the socket is bound here, to a port the kernel picks, and
    handed to uvicorn: nothing can take the port in between.
    """
    sockets = None
    if port is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        sockets = [sock]
    config = uvicorn_config(app, host, port)
    config.loop = "none"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets))
    try:
        while not server.started:
            if task.done():
                task.result()
                msg = "server stopped before it started"
                raise RuntimeError(msg)
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def start_redis(port: int, directory: Path, *, cpu: str | None = None) -> subprocess.Popen[bytes]:
    """Start a private ``redis-server`` on ``port`` and wait until it answers there.

    Nothing is kept on disk (``directory`` is its working directory); ``cpu``
    pins it to those cores (``taskset``). The caller stops it.
    """
    pin = ["taskset", "-c", cpu] if cpu is not None else []
    proc = subprocess.Popen(  # noqa: S603 - fixed arguments, no caller input
        [
            *pin,
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    # Answered by this process, not by another server already on the port.
    mine = f"process_id:{proc.pid}\r".encode()
    while (
        mine
        not in subprocess.run(  # noqa: S603 - fixed arguments, no caller input
            ["redis-cli", "-p", str(port), "info", "server"],  # noqa: S607 - from PATH
            capture_output=True,
            check=False,
        ).stdout
    ):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            msg = f"redis-server on port {port} did not answer (exit status {proc.returncode})"
            raise RuntimeError(msg)
        time.sleep(0.05)
    return proc
