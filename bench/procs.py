"""Helpers for benchmarks that run servers as child processes and watch their CPU and memory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from tara.serving import free_port, start_redis

ROOT = Path(__file__).resolve().parents[1]
TARA = str(Path(sys.executable).with_name("tara"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers any HTTP status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def child(
    args: list[str],
    ready_url: str,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; waits for ``ready_url`` first."""
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    try:
        wait_http(ready_url, ready_timeout)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def private_redis(core: str | None = None) -> Iterator[str]:
    """A ``redis-server`` of the bench's own (nothing on disk), pinned to ``core`` if
    given; yields its URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tara-bench-redis-") as tmp:
        proc = start_redis(port, Path(tmp), cpu=core)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)
