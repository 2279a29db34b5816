"""The baselines for the gateway benchmarks: bare pass-through proxies on aiohttp.

It forwards ``POST /v1/chat/completions`` to the upstream with one shared
aiohttp session and relays the answer (chunk by chunk for streams), doing
nothing else: no auth, routing, parsing, disconnect watching or metrics. It
runs under the same uvicorn settings as the gateway and its session is tuned
exactly like the gateway's (default headers on the session, no cookie jar, no
decompression, no Accept-Encoding), so the comparison measures what the
gateway adds, not a handicapped baseline.

``--starlette`` serves the bare Starlette + aiohttp proxy instead, the one
most people write and issue 16's reference: a Starlette route reading the
body with ``Request.body()`` and answering with ``Response`` or
``StreamingResponse``, on the same tuned session.

Run: ``python bench/passthrough.py --port 8090 --upstream http://127.0.0.1:8081/v1``
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import yarl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tara.serving import serve_forever

_NOT_FOUND = b'{"error":{"message":"not found"}}'


class PassThrough:
    """A pass-through proxy ASGI app for ``upstream`` (a base URL ending in /v1)."""

    def __init__(self, upstream: str, key: str = "sk-sandbox", pool: int = 4096) -> None:
        self.pool = pool
        """Pool size: the gateway's default ``upstream.max_connections``."""
        self.url = yarl.URL(f"{upstream}/chat/completions")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    def new_session(self) -> aiohttp.ClientSession:
        """The upstream session, tuned like the gateway's."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.pool, limit_per_host=0),
            headers=self.headers,
            skip_auto_headers=("Accept-Encoding",),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            await self._proxy(receive, send)
        else:
            start = {"type": "http.response.start", "status": 404, "headers": []}
            await send(start)
            await send({"type": "http.response.body", "body": _NOT_FOUND})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = self.new_session()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, receive: Receive, send: Send) -> None:
        assert self.session is not None
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        resp = await self.session.post(self.url, data=body)
        try:
            content_type = resp.headers.get("Content-Type", "application/json").encode()
            if resp.content_type == "text/event-stream":
                headers: list[Any] = [(b"content-type", content_type)]
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": headers}
                )
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await resp.read()
            headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(data))]
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
        finally:
            resp.release()


def starlette_app(upstream: str) -> Starlette:
    """The bare Starlette + aiohttp proxy for ``upstream``: one route, nothing else."""
    proxy = PassThrough(upstream)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        proxy.session = proxy.new_session()
        yield
        await proxy.session.close()

    async def chat(request: Request) -> Response:
        assert proxy.session is not None
        resp = await proxy.session.post(proxy.url, data=await request.body())
        media_type = resp.headers.get("Content-Type", "application/json")
        if resp.content_type == "text/event-stream":

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()

            return StreamingResponse(relay(), status_code=resp.status, media_type=media_type)
        data = await resp.read()
        resp.release()
        return Response(data, status_code=resp.status, media_type=media_type)

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan
    )


def main() -> None:
    """Run the pass-through proxy until interrupted."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--upstream", default="http://127.0.0.1:8081/v1")
    parser.add_argument("--starlette", action="store_true", help="the bare Starlette proxy")
    args = parser.parse_args()
    app = starlette_app(args.upstream) if args.starlette else PassThrough(args.upstream)
    serve_forever(app, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
