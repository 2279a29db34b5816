"""A lean HTTP/1.1 client for the one upstream: pooled keep-alive connections.

The gateway sends one kind of request to one host: ``POST`` a small JSON body
to ``{base_url}/chat/completions`` and relay the answer, often as a stream
of small chunks. aiohttp's client does that through a general machinery
(a request object, header multidicts, payload registry, tracing, cookie jar,
a stream reader with its own buffering) that cost more CPU per request than
all of the gateway's own work (issue 16, docs/benchmarks.md). Here each
pooled connection is an :class:`asyncio.Protocol` whose bytes go straight
into httptools' C parser; a response hands body chunks to the reader as
they arrive (:meth:`UpstreamResponse.read_some`).

What it does: HTTP and HTTPS (TLS with certificate and host name checks),
keep-alive connections reused last-in first-out and closed after
``keepalive`` idle seconds, a bounded pool (callers wait for a free
connection, first come first served), chunked and length-delimited bodies
and bodies ending at close, and back-pressure: a reader that falls behind
pauses the socket. What it does not: redirects, proxies, compression,
cookies, HTTP/2, request bodies beyond one buffer; none of them is used.

Errors: a connection that fails, closes early or sends bytes that are not
HTTP raises :class:`UpstreamConnectionError` (an :class:`OSError`) from
whatever was waiting on it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import cast

import httptools
import yarl

_HIGH_WATER = 256 * 1024
"""Buffered body bytes above which reading from the upstream pauses until the reader
catches up (a slow client)."""


class UpstreamConnectionError(ConnectionError):
    """The connection failed, broke, or carried something that is not HTTP."""


class UpstreamResponse:
    """One response: status and headers once in, then the body as it arrives."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_error",
        "_loop",
        "_waiter",
        "complete",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn
        self._loop = conn.loop
        self.status = 0
        self.headers: dict[str, str] = {}
        """Header names in lower case; a repeated header keeps its last value."""
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.complete = False
        """The whole body has arrived (it may still be buffered here)."""

    @property
    def content_type(self) -> str:
        """The media type, lower case and without parameters (``""`` if none)."""
        value = self.headers.get("content-type", "")
        return value.partition(";")[0].strip().lower()

    def at_eof(self) -> bool:
        """Whether the body has arrived and been read in full."""
        return self.complete and not self._chunks

    async def read_some(self) -> bytes:
        """All body bytes that have arrived (waiting for some); ``b""`` at the end.

        Raises :class:`UpstreamConnectionError` if the connection broke first.
        """
        chunks = self._chunks
        while not chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            waiter = self._waiter = self._loop.create_future()
            await waiter
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._buffered > _HIGH_WATER and self._conn is not None:
            self._conn.resume()  # paused when the buffer passed the mark
        self._buffered = 0
        return data

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body, or its first ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            data = await self.read_some()
            if not data:
                break
            parts.append(data)
            size += len(data)
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    def release(self) -> None:
        """Give the connection back for reuse if the body was read in full, else close it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finished(reuse=self.at_eof())

    def close(self) -> None:
        """Drop the connection (the upstream stops work on this request)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finished(reuse=False)

    # -- called by the connection ------------------------------------------
    def _end(self, error: BaseException | None) -> None:
        if error is None:
            self.complete = True
        elif not self.complete:
            self._error = error
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: writes requests, parses responses with httptools."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        """Made once connected: it holds this protocol's callbacks, a cycle that a connection
        attempt that failed (no ``connection_lost`` to break it) would leave as garbage."""
        self.response: UpstreamResponse | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._headers_in: asyncio.Future[None] | None = None
        self._keep_alive = False
        self._until_close = False
        self._paused = False
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, but have its methods.
        self.transport = cast("asyncio.Transport", transport)
        self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if self.response is None or parser is None:  # bytes nobody asked for: unusable
            self._fail(UpstreamConnectionError("unexpected bytes from the upstream"))
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamConnectionError(f"invalid HTTP from the upstream: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and self._until_close and self._headers_in is None:
            response._end(None)  # a body delimited by the end of the connection
        else:
            self._fail(UpstreamConnectionError("the upstream closed the connection"))
        # The parser holds this protocol's callbacks and the transport holds the protocol:
        # dropping both lets reference counting free a closed connection (no cyclic garbage).
        self.parser = None
        self.transport = None

    # -- httptools callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        response = self.response
        if response is None or response.status:  # a second answer to one request
            msg = "the upstream sent a response nobody asked for"
            raise UpstreamConnectionError(msg)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        assert self.parser is not None
        status = self.parser.get_status_code()
        if status < 200:  # informational (103 Early Hints): the answer is still to come
            self._headers = []
            return
        response.status = status
        headers = {}
        for name, value in self._headers:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        self._headers = []
        response.headers = headers
        chunked = "chunked" in headers.get("transfer-encoding", "")
        self._until_close = not chunked and "content-length" not in headers
        waiter, self._headers_in = self._headers_in, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        # Once per chunk of every stream: the response's buffer is filled from here.
        response = self.response
        assert response is not None
        response._chunks.append(body)
        response._buffered += len(body)
        waiter = response._waiter
        if waiter is not None:
            response._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if response._buffered > _HIGH_WATER:
            self.pause()

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        assert self.parser is not None
        if not response.status:
            return  # the end of an informational response
        self._keep_alive = self.parser.should_keep_alive()
        response._end(None)

    # -- the pool's side ----------------------------------------------------
    async def request(self, head: bytes, body: bytes) -> UpstreamResponse:
        """Send one request and wait for the response's status and headers."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise UpstreamConnectionError("the upstream closed the connection")
        response = self.response = UpstreamResponse(self)
        self._keep_alive = False
        self._until_close = False
        waiter = self._headers_in = self.loop.create_future()
        transport.write(head + body)
        await waiter
        if response._error is not None:
            raise response._error
        return response

    def finished(self, *, reuse: bool) -> None:
        """The response is done with: keep the connection for the next one, or close it."""
        response, self.response = self.response, None
        keep = reuse and self._keep_alive and response is not None and response.complete
        if keep and not self.closed:
            if self._paused:
                self.resume()
            self.pool.put_back(self)
            return
        self.close()
        self.pool.forget(self)

    def close(self) -> None:
        """Close the socket (at once; the upstream sees the connection end)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        """Stop reading from the socket (the reader is behind)."""
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        """Read from the socket again."""
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, error: UpstreamConnectionError) -> None:
        self._keep_alive = False
        waiter, self._headers_in = self._headers_in, None
        response = self.response
        if response is not None:
            response._end(error)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self.closed:
            self.close()


class UpstreamPool:
    """Keep-alive connections to the upstream's host, at most ``limit`` open at once.

    ``url`` is where requests go (``http://`` or ``https://``); ``headers``
    are sent with every request (the key among them: never logged here).
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        limit: int,
        connect_timeout: float,
        keepalive: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = yarl.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            msg = "the upstream URL must be http:// or https:// with a host"
            raise ValueError(msg)
        self.host = parsed.host
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        host = f"[{self.host}]" if ":" in self.host else self.host
        if parsed.explicit_port:
            host = f"{host}:{self.port}"
        target = parsed.raw_path_qs or "/"
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}"]
        for name, value in headers.items():
            if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
                msg = f"the upstream header {name[:40]!r} has a line break, NUL or colon"
                raise ValueError(msg)
            lines.append(f"{name}: {value}")
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.loop = asyncio.get_running_loop()
        self._idle: deque[_Connection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or in use."""
        return self._open

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for a request."""
        return len(self._idle)

    async def post(self, body: bytes) -> UpstreamResponse:
        """Send ``body`` and return the response once its status and headers are in."""
        head = b"%s%d\r\n\r\n" % (self._head, len(body))
        conn = await self._acquire()
        try:
            return await conn.request(head, body)
        except BaseException:
            conn.finished(reuse=False)
            raise

    async def _acquire(self) -> _Connection:
        if self._closed:
            msg = "the upstream pool is closed"
            raise UpstreamConnectionError(msg)
        conn = self._take_idle()
        if conn is not None:
            return conn
        while self._open >= self.limit:
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the turn this caller will not take
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            conn = self._take_idle()
            if conn is not None:
                return conn
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    def _take_idle(self) -> _Connection | None:
        """The idle connection used last, if one is still open."""
        idle = self._idle
        if not idle:
            return None
        # The oldest idle connection has been unused longest: past the keep-alive time
        # the upstream may close it any moment, so it is closed here first.
        expired = time.monotonic() - self.keepalive
        while idle and idle[0].idle_since < expired:
            idle.popleft().close()
            self._open -= 1
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._open -= 1  # the upstream closed it while it waited
        return None

    async def _connect(self) -> _Connection:
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise
        except OSError as exc:  # ssl.SSLError included
            msg = f"cannot connect to the upstream: {type(exc).__name__}"
            raise UpstreamConnectionError(msg) from exc
        return protocol

    def put_back(self, conn: _Connection) -> None:
        """A connection free for the next request (called by the connection)."""
        if self._closed:
            conn.close()
            self._open -= 1
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        self._wake()

    def forget(self, conn: _Connection) -> None:
        """A connection closed for good (called by the connection)."""
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every idle connection; those in use close when their response ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
            self._open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamConnectionError("the upstream pool is closed"))
