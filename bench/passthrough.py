"""The baseline for the gateway benchmark: the thinnest Starlette proxy on aiohttp.

It forwards ``POST /v1/chat/completions`` to the upstream with one shared
aiohttp session and streams the body back, doing nothing else: no auth,
routing, parsing or metrics. The gateway's overhead is measured against it.

Run: ``python bench/passthrough.py --port 8090 --upstream http://127.0.0.1:8081/v1``
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tara.serving import serve_forever


def build_app(upstream: str) -> Starlette:
    """A pass-through proxy app for ``upstream`` (a base URL ending in /v1)."""
    session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        yield
        await session.close()

    async def chat(request: Request) -> Response:
        assert session is not None
        body = await request.body()
        resp = await session.post(
            f"{upstream}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": "Bearer sk-sandbox"},
        )
        if resp.content_type == "text/event-stream":

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()

            return StreamingResponse(
                relay(), status_code=resp.status, media_type="text/event-stream"
            )
        data = await resp.read()
        resp.release()
        return Response(data, status_code=resp.status, media_type="application/json")

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan
    )


def main() -> None:
    """Run the pass-through proxy until interrupted."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--upstream", default="http://127.0.0.1:8081/v1")
    args = parser.parse_args()
    serve_forever(build_app(args.upstream), "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
