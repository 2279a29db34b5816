"""What the chaos tests share: a real ``tara serve`` process, students, metrics, the log.

Every fault in this suite is a real one: processes killed with SIGKILL or
stopped with SIGTERM, a Redis server of our own killed, PostgreSQL cut by a
TCP relay, upstream failures injected through the sandbox's control routes.
The gateway always runs as its own process, started the way an operator
starts it (``python -m tara serve`` with ``TARA_*`` variables), and is read
from outside: its ``/metrics``, its exit code, its log output, the rows in
its interaction log.

Each test records what it measured in :data:`FIGURES` (printed at the end of
the session by ``tests/chaos/conftest.py``); ``docs/reliability.md`` quotes
those figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tara.sandbox import Latency, SandboxConfig, default_config, running_sandbox, zero_latency
from tara.serving import free_port, start_redis
from tara.settings import Settings
from tara.telemetry.interactions import Interaction
from tara.telemetry.log_backends import open_log

CLIENT_KEY = "sk-chaos-client"
UPSTREAM_KEY = "sk-chaos-upstream"
TRACK = "tara-tutor"
STABLE = "tara-stable"
QUESTION = [{"role": "user", "content": "भिन्न क्या होती है?"}]
START_TIMEOUT = 30.0

FIGURES: dict[str, dict[str, Any]] = {}
"""What each chaos test measured, by test name (printed at the end of the run)."""


def figures(test: str, **numbers: Any) -> None:
    """Record what a chaos test measured."""
    FIGURES.setdefault(test, {}).update(numbers)


def fast_sandbox(ttft_ms: float = 0.0, token_ms: float = 0.0) -> SandboxConfig:
    """The built-in models, fast, with a known key; ``tara-stable`` gets the given latency."""
    config = zero_latency(default_config()).model_copy(update={"api_keys": [UPSTREAM_KEY]})
    stable = config.models[STABLE].model_copy(
        update={"latency": Latency(ttft_median_ms=ttft_ms, ttft_sigma=0, token_delay_ms=token_ms)}
    )
    return config.model_copy(update={"models": {**config.models, STABLE: stable}})


@contextlib.asynccontextmanager
async def sandbox(config: SandboxConfig | None = None) -> AsyncIterator[str]:
    """A running sandbox upstream; yields its ``.../v1`` URL."""
    async with running_sandbox(config or fast_sandbox(), seed=7) as url:
        yield url


async def control(upstream: str, model: str, behaviour: Mapping[str, Any]) -> None:
    """Change a sandbox model's behaviour at run time (``POST /sandbox/models/{model}``)."""
    base = upstream.removesuffix("/v1")
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{base}/sandbox/models/{model}",
            json=dict(behaviour),
            headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
        )
        response.raise_for_status()


def gateway_env(upstream_url: str, tmp: Path, **settings: Any) -> dict[str, str]:
    """``TARA_*`` variables for a gateway on ``upstream_url``; ``settings`` as nested keys.

    ``database_url="..."`` sets ``TARA_DATABASE_URL``; ``telemetry={"x": 1}``
    sets ``TARA_TELEMETRY__X``. The log is a SQLite file in ``tmp`` unless
    told otherwise, and the spool lives in ``tmp``.
    """
    env = {
        "TARA_UPSTREAM__BASE_URL": upstream_url,
        "TARA_UPSTREAM__API_KEY": UPSTREAM_KEY,
        "TARA_AUTH__CLIENT_KEYS": json.dumps([CLIENT_KEY]),
        "TARA_AUTH__ADMIN_KEY": "sk-chaos-admin",
        "TARA_TRACKS": json.dumps({TRACK: {"stable_model": STABLE}}),
        "TARA_DATABASE_URL": f"sqlite:///{tmp / 'log.db'}",
        "TARA_TELEMETRY__SPOOL_PATH": str(tmp / "spool.jsonl"),
        "TARA_TELEMETRY__FLUSH_INTERVAL": "0.2",
        "TARA_TELEMETRY__RETRY_INITIAL_BACKOFF": "0.05",
        "TARA_TELEMETRY__RETRY_MAX_BACKOFF": "0.5",
        "TARA_STATS__FLUSH_INTERVAL": "0.2",
        "TARA_SERVER__SHUTDOWN_TIMEOUT": "20",
    }
    for name, value in settings.items():
        if isinstance(value, dict):
            for key, inner in value.items():
                env[f"TARA_{name.upper()}__{key.upper()}"] = _text(inner)
        else:
            env[f"TARA_{name.upper()}"] = _text(value)
    return env


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Gateway:
    """A ``tara serve`` process on a free loopback port, its output kept in a file."""

    def __init__(self, env: Mapping[str, str], tmp: Path, name: str = "gateway") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"{name}-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tara", "serve", "--port", str(self.port)],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        """Wait for ``/readyz`` to answer 200 (or fail if the process died)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    msg = f"tara serve exited {self.proc.returncode}:\n{self.output()}"
                    raise AssertionError(msg)
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base}/readyz")).status_code == 200:
                        return
                assert loop.time() < deadline, "tara serve never became ready"
                await asyncio.sleep(0.05)

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of ``/metrics``: ``(name, labels) -> value``."""
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"{self.base}/metrics")).text
        out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    async def sample(self, name: str, **labels: str) -> float:
        """One metric sample (0 when absent)."""
        return (await self.metrics()).get((name, frozenset(labels.items())), 0.0)

    async def total(self, name: str) -> float:
        """The sum of every sample of ``name`` (all labels)."""
        return sum(v for (n, _), v in (await self.metrics()).items() if n == name)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        self.proc.send_signal(signum)

    async def wait(self, timeout: float = 40.0) -> int:  # noqa: ASYNC109 - a subprocess wait
        """Wait for the process to end; its exit code."""
        try:
            code = await asyncio.to_thread(self.proc.wait, timeout)
        finally:
            self._log.close()
        return code

    def output(self) -> str:
        """What the process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop_now(self) -> None:
        """Kill the process if it still runs (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@contextlib.asynccontextmanager
async def running_gateway(
    env: Mapping[str, str], tmp: Path, name: str = "gateway"
) -> AsyncIterator[Gateway]:
    """A ready gateway process, stopped with SIGTERM (then killed) at the end."""
    gateway = Gateway(env, tmp, name)
    try:
        await gateway.ready()
        yield gateway
    finally:
        if gateway.proc.poll() is None:
            gateway.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await gateway.wait(30)
        gateway.stop_now()


@dataclass
class Outcome:
    """What the students saw."""

    answered: list[str] = field(default_factory=list)
    """Request ids of complete answers (a whole stream, ``[DONE]`` included)."""
    failed: list[str] = field(default_factory=list)
    """What went wrong for each failed request (status, error, or a broken stream)."""
    rated: list[str] = field(default_factory=list)
    """Request ids whose rating the gateway accepted."""
    rating_retries: int = 0
    """Ratings answered 503 (store unavailable, retry later) and sent again."""
    latencies: list[float] = field(default_factory=list)


async def ask(
    client: httpx.AsyncClient, base: str, student: str, outcome: Outcome, *, stream: bool
) -> str | None:
    """One chat request as a student sends it; records the outcome, returns the request id."""
    body = {"model": TRACK, "messages": QUESTION, "stream": stream}
    headers = {
        "Authorization": f"Bearer {CLIENT_KEY}",
        "X-Tara-User": student,
        "X-Tara-Subject": "math",
        "X-Tara-Language": "hi",
    }
    started = time.monotonic()
    try:
        async with client.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers=headers
        ) as response:
            data = await response.aread()
            rid = response.headers.get("x-tara-request-id")
            if response.status_code != 200:
                outcome.failed.append(f"{response.status_code}: {data[:200]!r}")
                return None
            if stream and not data.rstrip().endswith(b"data: [DONE]"):
                outcome.failed.append(f"stream broken: {data[-200:]!r}")
                return None
    except httpx.HTTPError as exc:
        outcome.failed.append(f"{type(exc).__name__}: {exc}")
        return None
    outcome.latencies.append(time.monotonic() - started)
    assert rid is not None
    outcome.answered.append(rid)
    return rid


RATING_PATIENCE = 20.0
"""How long the app retries a rating the gateway answered 503 ("retry later") for."""


async def rate(client: httpx.AsyncClient, base: str, rid: str, outcome: Outcome) -> None:
    """Rate an answer as the app does: retry a 503; anything else refused is a failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RATING_PATIENCE
    while True:
        response = await client.post(
            f"{base}/v1/feedback",
            json={"request_id": rid, "rating": 4, "tags": ["cultural"]},
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        )
        if response.status_code == 200:
            outcome.rated.append(rid)
            return
        if response.status_code != 503 or loop.time() > deadline:
            outcome.failed.append(f"feedback {response.status_code}: {response.text[:200]}")
            return
        outcome.rating_retries += 1
        await asyncio.sleep(0.2)


async def students(
    base: str,
    stop: asyncio.Event,
    outcome: Outcome,
    *,
    count: int = 8,
    rate_every: int = 3,
    max_seconds: float = 60.0,
) -> None:
    """``count`` students asking (alternately streaming) and rating until ``stop`` is set."""

    async def one(n: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            ratings: list[asyncio.Task[None]] = []
            i = 0
            while not stop.is_set() and loop.time() < deadline:
                rid = await ask(client, base, f"chaos-{n}-{i}", outcome, stream=i % 2 == 0)
                if rid is not None and i % rate_every == 0:
                    # Rated a moment later, while the student goes on asking.
                    ratings.append(asyncio.create_task(rate(client, base, rid, outcome)))
                i += 1
                await asyncio.sleep(0.01)
            await asyncio.gather(*ratings)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    await asyncio.gather(*(one(n) for n in range(count)))


@contextlib.asynccontextmanager
async def under_load(base: str, outcome: Outcome, count: int = 8) -> AsyncIterator[None]:
    """Students keep asking while the block runs; they finish their request when it ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(students(base, stop, outcome, count=count))
    try:
        await asyncio.sleep(0.3)  # traffic is flowing before the fault
        yield
    finally:
        stop.set()
        await task


async def stored_rows(database_url: str, settings: Settings | None = None) -> list[Interaction]:
    """Every row of the interaction log at ``database_url``."""
    settings = settings or Settings()
    log = open_log(database_url, settings.telemetry)
    try:
        await log.migrate()
        return [ix async for ix in log.iter_interactions()]
    finally:
        await log.aclose()


@contextlib.contextmanager
def redis_server(port: int, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A private ``redis-server`` on ``port`` (nothing on disk), stopped at the end."""
    proc = start_redis(port, tmp)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
