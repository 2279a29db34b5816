"""The upstream HTTP/1.1 client (``tara.gateway.upstream_http``) against real servers.

Each test starts a server on 127.0.0.1 that answers as an upstream might,
well or badly: an aiohttp application, or raw sockets where the bytes on
the wire are the point (a body that ends at close, a connection cut in the
middle of a body, bytes that are not HTTP, TLS with a test authority).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
from aiohttp import web

from tara.gateway.upstream_http import UpstreamConnectionError, UpstreamPool
from tara.sandbox.server import serving

pytestmark = pytest.mark.integration

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEADERS = {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A socket server on a free port running ``handler`` per connection."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:  # every writer closed while the loop runs (else a warning at exit)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def pool(port: int, scheme: str = "http", **kwargs: object) -> UpstreamPool:
    options: dict[str, object] = {"limit": 8, "connect_timeout": 2.0, **kwargs}
    return UpstreamPool(
        f"{scheme}://127.0.0.1:{port}/v1/chat/completions",
        HEADERS,
        **options,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def app_server(
    chat: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[int]:
    """An aiohttp upstream answering chat completions with ``chat``."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as port:
        yield port


def held_until(release: asyncio.Event) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that answers ``ok`` once ``release`` is set."""

    async def chat(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="ok")

    return chat


@contextlib.asynccontextmanager
async def echo_app(connections: list[object]) -> AsyncIterator[int]:
    """An aiohttp upstream that echoes what it got and notes each request's connection."""

    async def chat(request: web.Request) -> web.Response:
        connections.append(request.transport)
        body = await request.read()
        return web.json_response(
            {
                "path": request.path,
                "host": request.headers.get("Host"),
                "auth": request.headers.get("Authorization"),
                "type": request.headers.get("Content-Type"),
                "body": body.decode(),
            },
            headers={"X-Upstream": "yes", "Retry-After": "3"},
        )

    async with app_server(chat) as port:
        yield port


async def test_a_request_arrives_whole_and_the_connection_is_reused() -> None:
    connections: list[object] = []
    async with echo_app(connections) as port:
        upstream = pool(port)
        for n in range(3):
            response = await upstream.post(b'{"n": %d}' % n)
            assert response.status == 200
            assert response.content_type == "application/json"
            assert response.headers["x-upstream"] == "yes"  # names in lower case
            got = await response.read()
            response.release()
            assert b'"path": "/v1/chat/completions"' in got
            assert f'"host": "127.0.0.1:{port}"'.encode() in got
            assert b'"auth": "Bearer sk-test"' in got
            assert b'"type": "application/json"' in got
            assert b'"body": "{\\"n\\": %d}"' % n in got
        assert len(set(map(id, connections))) == 1
        assert upstream.open_connections == upstream.idle_connections == 1
        await upstream.close()
        assert upstream.open_connections == 0


async def test_a_chunked_stream_is_read_as_it_comes() -> None:
    parts = [b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"]
    sent = asyncio.Event()

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for part in parts:
            await response.write(part)
            await sent.wait()
            sent.clear()
        return response

    async with app_server(chat) as port:
        upstream = pool(port)
        response = await upstream.post(b"{}")
        assert response.content_type == "text/event-stream"
        got = []
        for _ in parts:
            got.append(await response.read_some())  # each before the next is written
            assert not response.at_eof()
            sent.set()
        assert got == parts
        assert await response.read_some() == b""
        assert response.at_eof()
        response.release()
        assert upstream.idle_connections == 1  # a chunked body ends cleanly: reusable
        await upstream.close()


async def test_a_body_that_ends_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as port:
        upstream = pool(port)
        response = await upstream.post(b"{}")
        assert await response.read() == b"all of it"
        assert response.at_eof()
        response.release()
        assert upstream.open_connections == 0  # not reusable
        await upstream.close()


async def test_a_connection_cut_mid_body_raises_a_connection_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.transport.abort()

    async with raw_server(handler) as port:
        upstream = pool(port)
        response = await upstream.post(b"{}")
        assert await response.read_some() == b"only part"
        with pytest.raises(UpstreamConnectionError):
            await response.read_some()
        assert isinstance(UpstreamConnectionError(), OSError)
        response.release()
        assert upstream.open_connections == 0
        await upstream.close()


@pytest.mark.parametrize(
    "answer",
    [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b""],
    ids=["garbage", "bad-length", "closed-at-once"],
)
async def test_an_answer_that_is_not_http_is_a_connection_error(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(handler) as port:
        upstream = pool(port)
        with pytest.raises(UpstreamConnectionError):
            await upstream.post(b"{}")
        assert upstream.open_connections == 0
        await upstream.close()


async def test_no_server_is_a_connection_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    upstream = pool(port)
    with pytest.raises(UpstreamConnectionError, match="cannot connect"):
        await upstream.post(b"{}")
    assert upstream.open_connections == 0
    await upstream.close()


async def test_the_pool_never_opens_more_than_its_limit() -> None:
    in_flight = 0
    most = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.Response(text="ok")

    async with app_server(chat) as port:
        upstream = pool(port, limit=2)

        async def one() -> bytes:
            response = await upstream.post(b"{}")
            try:
                return await response.read()
            finally:
                response.release()

        answers = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(10))), 10)
        assert answers == [b"ok"] * 10
        assert most == 2
        assert upstream.open_connections == 2
        await upstream.close()


async def test_a_caller_cancelled_while_waiting_for_the_pool_gives_up_its_turn() -> None:
    release = asyncio.Event()
    async with app_server(held_until(release)) as port:
        upstream = pool(port, limit=1)
        first = asyncio.ensure_future(upstream.post(b"{}"))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(upstream.post(b"{}"))
        third = asyncio.ensure_future(upstream.post(b"{}"))
        await asyncio.sleep(0.05)
        waiting.cancel()
        release.set()
        response = await asyncio.wait_for(first, 5)
        assert await response.read() == b"ok"
        response.release()
        response = await asyncio.wait_for(third, 5)  # took the turn the cancelled one left
        assert await response.read() == b"ok"
        response.release()
        assert upstream.open_connections == 1
        await upstream.close()


async def test_cancelled_before_the_headers_drops_the_connection() -> None:
    gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client goes away
        gone.set()

    async with raw_server(handler) as port:
        upstream = pool(port)
        attempt = asyncio.ensure_future(upstream.post(b"{}"))
        await asyncio.sleep(0.05)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await asyncio.wait_for(gone.wait(), 5)  # the upstream learns to stop
        assert upstream.open_connections == 0
        await upstream.close()


async def test_a_connection_the_upstream_closed_while_idle_is_not_used() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive promised, then closed: an upstream's idle timeout

    async with raw_server(handler) as port:
        upstream = pool(port)
        for _ in range(3):
            response = await upstream.post(b"{}")
            assert await response.read() == b"ok"
            response.release()
            await asyncio.sleep(0.05)  # the close arrives
        assert connections == 3
        await upstream.close()


async def test_idle_connections_past_the_keepalive_time_are_closed() -> None:
    connections: list[object] = []
    async with echo_app(connections) as port:
        upstream = pool(port, keepalive=0.05)
        for _ in range(2):
            response = await upstream.post(b"{}")
            await response.read()
            response.release()
            await asyncio.sleep(0.1)
        assert len(set(map(id, connections))) == 2
        assert upstream.open_connections == 1
        await upstream.close()


async def test_releasing_an_unread_body_closes_the_connection() -> None:
    connections: list[object] = []
    async with echo_app(connections) as port:
        upstream = pool(port)
        response = await upstream.post(b"{}")
        response.release()  # body never read: the connection cannot be reused
        assert upstream.open_connections == 0
        response.close()  # a second end changes nothing
        assert upstream.open_connections == 0
        await upstream.close()


async def test_a_slow_reader_pauses_the_upstream_and_loses_nothing() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(body), 16384):
            await response.write(body[start : start + 16384])
        return response

    async with app_server(chat) as port:
        upstream = pool(port)
        response = await upstream.post(b"{}")
        await asyncio.sleep(0.3)  # the upstream writes; nobody reads
        first = await response.read_some()
        assert 0 < len(first) < len(body)  # reading paused, so not all of it is buffered
        rest = await response.read()
        assert first + rest == body
        response.release()
        assert upstream.idle_connections == 1
        await upstream.close()


async def test_tls_with_a_trusted_authority_and_refused_without() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    trusted = ssl.create_default_context()
    authority.configure_trust(trusted)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
            await writer.drain()

    async with raw_server(handler, tls=server_context) as port:
        upstream = pool(port, scheme="https", ssl_context=trusted)
        response = await upstream.post(b"{}")
        assert await response.read() == b"secret"
        response.release()
        await upstream.close()

        untrusting = pool(port, scheme="https")  # the system's authorities only
        with pytest.raises(UpstreamConnectionError, match="SSLCertVerificationError"):
            await untrusting.post(b"{}")
        await untrusting.close()


async def test_a_closed_pool_refuses_requests_and_waiters() -> None:
    release = asyncio.Event()
    async with app_server(held_until(release)) as port:
        upstream = pool(port, limit=1)
        busy = asyncio.ensure_future(upstream.post(b"{}"))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(upstream.post(b"{}"))
        await asyncio.sleep(0.05)
        await upstream.close()
        with pytest.raises(UpstreamConnectionError, match="closed"):
            await waiting
        with pytest.raises(UpstreamConnectionError, match="closed"):
            await upstream.post(b"{}")
        release.set()
        response = await asyncio.wait_for(busy, 5)
        assert await response.read() == b"ok"
        response.release()  # in use at close: closed now, not kept
        assert upstream.open_connections == 0


def test_the_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        UpstreamPool("ftp://example/v1", HEADERS, limit=1, connect_timeout=1)


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer sk\r\nX-Evil: 1"}, {"X:Y": "1"}, {"": "1"}, {"A": "b\0"}],
)
def test_a_header_that_would_split_the_request_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break"):
        UpstreamPool("http://127.0.0.1:1/v1", headers, limit=1, connect_timeout=1)


async def test_a_closed_connection_is_freed_without_the_garbage_collector() -> None:
    connections: list[object] = []
    async with echo_app(connections) as port:
        gc.collect()  # what earlier tests left is freed first
        gc.disable()
        try:
            upstream = pool(port)
            response = await upstream.post(b"{}")
            await response.read()
            response.release()
            await upstream.close()
            await asyncio.sleep(0.05)  # the closed connection's last callbacks run
            del response, upstream
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            left = [o for o in gc.garbage if type(o).__name__ in ("_Connection", "UpstreamPool")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert left == []


async def test_an_informational_response_before_the_answer_is_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)  # the hints arrive in a read of their own
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: 1\r\n\r\nok")
            await writer.drain()
        await reader.read()

    async with raw_server(handler) as port:
        upstream = pool(port)
        for _ in range(2):
            response = await upstream.post(b"{}")
            assert response.status == 200
            assert response.headers == {"content-length": "2", "x-final": "1"}
            assert await response.read() == b"ok"
            response.release()
        assert upstream.open_connections == 1  # and the connection is reused
        await upstream.close()


async def test_a_second_unasked_answer_ends_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmore")
        await writer.drain()
        await reader.read()

    async with raw_server(handler) as port:
        upstream = pool(port)
        response = await upstream.post(b"{}")
        assert response.status == 200
        assert await response.read() == b"ok"  # the answer asked for is intact
        response.release()
        assert upstream.open_connections == 0  # never reused
        await upstream.close()
