"""Running the sandbox: ``tara sandbox`` and :func:`running_sandbox` for tests.

``running_sandbox`` serves an app on a free loopback port inside the
current event loop and yields its base URL ending in ``/v1`` (what an
``openai.AsyncOpenAI(base_url=...)`` or the gateway's ``upstream.base_url``
expects). ``sandbox_command`` serves until SIGINT/SIGTERM, then stops
accepting, lets running requests finish for ``shutdown_timeout`` seconds
and cancels the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from tara.loops import run_in_loop
from tara.sandbox.app import build_sandbox_app
from tara.sandbox.config import (
    SandboxConfig,
    default_config,
    load_sandbox_config,
    zero_latency,
)
from tara.settings import ConfigError, Settings

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, shutdown_timeout: float = 5.0
) -> AsyncIterator[int]:
    """Serve ``app`` on ``host:port`` (0: a free port) in this loop; yields the port."""
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=4096)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_sandbox(
    config: SandboxConfig | None = None, seed: int = 0, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """A sandbox on a free port of ``host``; yields its base URL, e.g. ``http://127.0.0.1:4711/v1``.

    ``config`` defaults to the built-in models *without latency*, so tests
    run fast; pass ``default_config()`` for the real latencies.
    """
    config = config or zero_latency(default_config())
    app = build_sandbox_app(config, seed=seed)
    async with serving(app, host, 0, shutdown_timeout=config.shutdown_timeout) as port:
        yield f"http://{host}:{port}/v1"


async def serve_until_signalled(config: SandboxConfig, seed: int, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    app = build_sandbox_app(config, seed=seed)
    async with serving(app, host, port, shutdown_timeout=config.shutdown_timeout) as bound:
        models = ", ".join(sorted(config.models))
        log.info("sandbox on http://%s:%d/v1 (seed %d) serving %s", host, bound, seed, models)
        await stop.wait()
        log.info(
            "sandbox shutting down (up to %.0fs for running requests)", config.shutdown_timeout
        )


def sandbox_command(args: argparse.Namespace, settings: Settings) -> int:
    """``tara sandbox``: the local OpenAI-compatible upstream (see ``--help``)."""
    del settings  # the sandbox is configured by its own --models file
    try:
        config = load_sandbox_config(args.models)
    except ConfigError as exc:
        print(f"tara sandbox: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbits(31)
    try:
        run_in_loop(serve_until_signalled(config, seed, args.host, args.port))
    except OSError as exc:
        print(f"tara sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
