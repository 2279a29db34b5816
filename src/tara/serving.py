"""Running ASGI apps under uvicorn: the CLI's servers and the tests' real servers.

``serve_forever`` is what ``tara serve`` and ``tara sandbox`` call: uvloop,
httptools, graceful shutdown with a timeout. ``running_server`` starts a real
uvicorn server on a free loopback port inside the current event loop, for
integration tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (race-prone in theory, fine on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


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
    )


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between collections of the youngest generation (Python's default is 700)."""


def tune_gc() -> None:
    """Set the cyclic garbage collector up for a long-running server.

    Everything alive now (modules, settings, the app) is frozen out of future
    collections, and the youngest generation is collected after 10,000
    allocations instead of 700. With the default, the objects of the ~32
    requests in flight were still alive at each collection, so they were
    promoted and then traversed again by every older-generation collection;
    collections cost ~7% of the gateway's instructions per request, and
    under 1% after this. (Freezing alone is worse than neither: with few
    objects left in the old generation, its full collections come far more
    often.)
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


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


def serve_forever(app: Any, host: str, port: int, shutdown_timeout: float = 10.0) -> None:
    """Run ``app`` until SIGINT/SIGTERM, drain for up to ``shutdown_timeout`` s, then return."""
    tune_gc()
    _DrainingServer(uvicorn_config(app, host, port, shutdown_timeout)).run()


@contextlib.asynccontextmanager
async def running_server(
    app: Any, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on a real socket in this event loop; yields its base URL."""
    port = port or free_port(host)
    config = uvicorn_config(app, host, port)
    config.loop = "none"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
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
