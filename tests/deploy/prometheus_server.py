"""A real Prometheus server for tests: scrapes given targets every second with Tara's rules.

``running_prometheus(targets)`` starts Debian's ``/usr/bin/prometheus`` on a
free loopback port with a throw-away config and data directory, waits until it
is ready, yields a :class:`PrometheusServer` and stops the process afterwards.
The ``prometheus`` fixture (import ``prometheus_fixture``) does the same per test.
Targets go in job ``tara-gateway`` so the alert rules apply to them unchanged;
the server always scrapes itself as job ``prometheus`` too.

Query helpers come in a blocking and an ``async`` flavour: a test that serves
the gateway from its own event loop must not block that loop while waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dependencies import missing
from tara.serving import free_port

REPO = Path(__file__).resolve().parents[2]
RULE_FILES = (
    REPO / "deploy/prometheus/rules/recording.yml",
    REPO / "deploy/prometheus/rules/alerts.yml",
)
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
START_TIMEOUT = 30.0

Sample = dict[str, Any]
"""One element of an instant query's ``result``: ``{"metric": {...}, "value": [t, "v"]}``."""


class PrometheusError(RuntimeError):
    """Prometheus did not start, or answered a query with an error."""


@dataclass(frozen=True)
class PrometheusServer:
    """A running Prometheus: its base URL and its log file."""

    url: str
    log: Path

    def query(self, expr: str) -> list[Sample]:
        """Evaluate ``expr`` now (instant query) and return the result vector."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        return _result(response)

    async def query_async(self, expr: str) -> list[Sample]:
        """Like :meth:`query`, without blocking the event loop."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{self.url}/api/v1/query", params={"query": expr})
        return _result(response)

    def wait_for(
        self, expr: str, accept: Callable[[list[Sample]], bool], patience: float = 30.0
    ) -> list[Sample]:
        """Poll ``expr`` until ``accept`` says yes; after ``patience`` s raise with the result."""
        deadline = time.monotonic() + patience
        while True:
            result = self.query(expr)
            if accept(result) or time.monotonic() > deadline:
                return _accepted(expr, result, accept)
            time.sleep(0.25)

    async def wait_for_async(
        self, expr: str, accept: Callable[[list[Sample]], bool], patience: float = 30.0
    ) -> list[Sample]:
        """Like :meth:`wait_for` (giving up after ``patience`` s), without blocking the loop."""
        deadline = time.monotonic() + patience
        while True:
            result = await self.query_async(expr)
            if accept(result) or time.monotonic() > deadline:
                return _accepted(expr, result, accept)
            await asyncio.sleep(0.25)


def _result(response: httpx.Response) -> list[Sample]:
    body = response.json()
    if body.get("status") != "success":
        msg = f"query failed ({response.status_code}): {body.get('error')}"
        raise PrometheusError(msg)
    result: list[Sample] = body["data"]["result"]
    return result


def _accepted(
    expr: str, result: list[Sample], accept: Callable[[list[Sample]], bool]
) -> list[Sample]:
    if not accept(result):
        msg = f"gave up waiting on {expr!r}; last result: {result}"
        raise PrometheusError(msg)
    return result


def write_rules(directory: Path) -> list[Path]:
    """Copy Tara's rule files into ``directory`` with every group evaluated each second.

    The real groups run every 30 s or 1 min; a test cannot wait that long for
    the first recorded sample.
    """
    written = []
    for source in RULE_FILES:
        rules = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in rules["groups"]:
            group["interval"] = "1s"
        target = directory / source.name
        target.write_text(yaml.safe_dump(rules), encoding="utf-8")
        written.append(target)
    return written


def write_config(
    path: Path, targets: Sequence[str], self_address: str, controllers: Sequence[str] = ()
) -> None:
    """Write a config scraping ``targets`` (job tara-gateway), ``controllers`` (job
    tara-controller, if any) and itself every second."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in write_rules(path.parent)],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [self_address]}]},
            {"job_name": "tara-gateway", "static_configs": [{"targets": list(targets)}]},
        ],
    }
    if controllers:
        job = {"job_name": "tara-controller", "static_configs": [{"targets": list(controllers)}]}
        config["scrape_configs"].append(job)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
    msg = f"prometheus at {url} did not become ready (exit code {proc.poll()}):\n{tail}"
    raise PrometheusError(msg)


@contextlib.contextmanager
def running_prometheus(
    targets: Sequence[str] = (), controllers: Sequence[str] = ()
) -> Iterator[PrometheusServer]:
    """Run Prometheus scraping gateway ``targets`` and ``controllers`` (``host:port``)
    until the block ends."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="tara-prometheus-") as tmp:
        root = Path(tmp)
        config, log = root / "prometheus.yml", root / "prometheus.log"
        write_config(config, targets, address, controllers)
        with log.open("wb") as log_file:
            proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address={address}",
                    "--log.level=warn",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://{address}"
            _wait_ready(proc, url, log)
            yield PrometheusServer(url=url, log=log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - Prometheus stops on SIGTERM
                proc.kill()
                proc.wait()


def require_prometheus() -> None:
    """Skip the calling test when the Prometheus server is not installed."""
    if not Path(PROMETHEUS).exists():
        missing("prometheus; run scripts/setup")


@pytest.fixture(name="prometheus")
def prometheus_fixture() -> Iterator[Callable[[Sequence[str]], PrometheusServer]]:
    """Fixture ``prometheus``, a factory: ``prometheus(["127.0.0.1:8080"])`` starts a server.

    Every server it started is stopped at teardown. Import ``prometheus_fixture``
    into the test module to use it (a conftest here would shadow tests/conftest.py).
    """
    require_prometheus()
    with contextlib.ExitStack() as stack:

        def start(targets: Sequence[str] = ()) -> PrometheusServer:
            return stack.enter_context(running_prometheus(targets))

        yield start
