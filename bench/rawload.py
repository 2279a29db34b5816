"""A closed-loop load generator for many open streams, on raw uvloop sockets.

aiohttp's client costs tens of microseconds per chunk; a thousand streams of
twenty chunks a second would take the whole load core and turn its own lag
into everybody's time to first byte. This client keeps ``concurrency``
keep-alive connections, each sending one request after the other, and only
looks for three things in the answers: the status line, the first body byte
(time to first byte) and the end of the body (``Content-Length`` or the
chunked terminator). Loopback only; used by ``bench/bench_loop.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import uvloop

from loadgen import LoadResult

_END = b"0\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending requests back to back."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head_done = False
        self.length: int | None = None
        self.status = 0
        self.t0 = 0.0
        self.first = False
        self.busy = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.run.ready(self)

    def send(self) -> None:
        """Send the next request, or finish."""
        request = self.run.next_request()
        if request is None:
            assert self.transport is not None
            self.transport.close()
            return
        self.start(request, time.perf_counter())

    def start(self, request: bytes, t0: float) -> None:
        """Send ``request``; its times count from ``t0`` (when it was due)."""
        self.buffer.clear()
        self.head_done = False
        self.first = False
        self.busy = True
        self.run.in_flight += 1
        self.t0 = t0
        assert self.transport is not None
        self.transport.write(request)

    def end(self) -> None:
        """The request in flight is over."""
        self.busy = False
        self.run.in_flight -= 1
        if not self.run.in_flight:
            self.run.drained.set()

    def data_received(self, data: bytes) -> None:
        if not self.head_done:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"content-length:")
            self.length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else None
            body = bytes(self.buffer[end + 4 :])
            self.buffer.clear()
            self.head_done = True
            if not body:
                return
            data = body
        if not self.first:
            self.first = True
            if self.t0 >= self.run.measure_from:
                self.run.result.ttfb.append(time.perf_counter() - self.t0)
        if self.length is not None:
            self.length -= len(data)
            finished = self.length <= 0
        else:
            self.buffer += data[-5:]
            del self.buffer[:-5]
            finished = self.buffer.endswith(_END)
        if finished:
            self.end()
            if self.t0 >= self.run.measure_from:
                self.run.result.latencies.append(time.perf_counter() - self.t0)
                self.run.result.statuses[self.status] += 1
            self.run.ready(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy and not self.done.done() and self.run.next_index_peek():
            self.run.result.statuses[0] += 1  # cut off mid-answer
        if self.busy:
            self.end()
        if not self.done.done():
            self.done.set_result(None)


class _Run:
    """The shared request counter and results of one run."""

    def __init__(
        self,
        url: str,
        body_for: Callable[[int], bytes],
        headers_for: Callable[[int], dict[str, str]],
        deadline: float,
        measure_from: float,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path
        self.body_for, self.headers_for = body_for, headers_for
        self.deadline = deadline
        self.measure_from = measure_from
        """Requests sent before this (the ramp and warm-up) are not counted."""
        self.counter = 0
        self.result = LoadResult()
        self.idle: list[_Connection] = []
        """Free connections (the open loop's)."""
        self.in_flight = 0
        self.drained = asyncio.Event()
        """Set whenever no request is in flight."""

    def next_index_peek(self) -> bool:
        """Whether more requests are due."""
        return time.perf_counter() < self.deadline

    def ready(self, conn: _Connection) -> None:
        """``conn`` is free: the closed loop sends it the next request at once."""
        conn.send()

    def next_request(self) -> bytes | None:
        """The bytes of the next request, or ``None`` once the run is over."""
        if time.perf_counter() >= self.deadline:
            return None
        self.counter += 1
        return self.request(self.counter)

    def request(self, i: int) -> bytes:
        """The bytes of request ``i``."""
        body = self.body_for(i)
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in self.headers_for(i).items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _OpenRun(_Run):
    """An open loop: requests go out when due, each on a free keep-alive connection."""

    def ready(self, conn: _Connection) -> None:
        self.idle.append(conn)


async def _closed(
    url: str,
    body_for: Callable[[int], bytes],
    headers_for: Callable[[int], dict[str, str]],
    concurrency: int,
    duration: float,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    ramp = min(1.0, duration / 4)
    warm = start + 2 * ramp
    run = _Run(url, body_for, headers_for, warm + duration, warm)
    conns = []
    for i in range(concurrency):
        # Connections open over the first ``ramp`` seconds, as clients arrive; nothing is
        # counted until twice that, so the ramp's burst of new connections is not measured.
        await asyncio.sleep(max(0.0, start + ramp * i / concurrency - time.perf_counter()))
        _, conn = await loop.create_connection(lambda: _Connection(run), run.host, run.port)
        conns.append(conn)
    await asyncio.gather(*(c.done for c in conns))
    run.result.elapsed = duration
    return run.result


async def _open(
    url: str,
    body_for: Callable[[int], bytes],
    headers_for: Callable[[int], dict[str, str]],
    rate: float,
    duration: float,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    warm_up = 1.0
    start = time.perf_counter() + 0.5
    measure_from = start + warm_up
    run = _OpenRun(url, body_for, headers_for, measure_from + duration, measure_from)
    conns = []

    async def connect() -> _Connection:
        _, conn = await loop.create_connection(lambda: _Connection(run), run.host, run.port)
        conns.append(conn)
        return conn

    # As many connections as answers of 100 ms at this rate keep busy open beforehand;
    # more are opened (and their opening counted) only if the target falls that far behind.
    await asyncio.gather(*(connect() for _ in range(max(16, int(rate / 10)))))
    count = int(rate * (warm_up + duration))
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        while run.idle and run.idle[-1].done.done():
            run.idle.pop()  # closed by the server while idle
        request = run.request(i + 1)
        if run.idle:
            run.idle.pop().start(request, due)
        else:
            conn = await connect()
            run.idle.remove(conn)
            conn.start(request, due)
    if run.in_flight:
        run.drained.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.drained.wait(), 30)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    run.result.elapsed = duration
    return run.result


def run_open_streams(
    url: str,
    body_for: Callable[[int], bytes],
    headers_for: Callable[[int], dict[str, str]],
    *,
    rate: float,
    duration: float,
) -> LoadResult:
    """Send request *i* at *i*/``rate`` whatever happened to earlier ones (its own loop).

    Times count from when a request was due, after a one-second warm-up; a
    raw-socket client keeps the load core's own lag (aiohttp's client costs
    far more per request) out of every target's tail.
    """
    return uvloop.run(_open(url, body_for, headers_for, rate, duration))


def run_streams(
    url: str,
    body_for: Callable[[int], bytes],
    headers_for: Callable[[int], dict[str, str]],
    *,
    concurrency: int,
    duration: float,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``duration`` seconds (runs its own loop)."""
    return uvloop.run(_closed(url, body_for, headers_for, concurrency, duration))
