"""The baseline for the gateway benchmark: the thinnest raw-ASGI proxy on aiohttp.

It forwards ``POST /v1/chat/completions`` to the upstream with one shared
aiohttp session and relays the answer (chunk by chunk for streams), doing
nothing else: no auth, routing, parsing, disconnect watching or metrics. It
runs under the same uvicorn settings as the gateway and its session is tuned
exactly like the gateway's (default headers on the session, no cookie jar, no
decompression, no Accept-Encoding), so the comparison measures what the
gateway adds, not a handicapped baseline.

Run: ``python bench/passthrough.py --port 8090 --upstream http://127.0.0.1:8081/v1``
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import yarl
from starlette.types import Receive, Scope, Send

from tara.serving import serve_forever

_NOT_FOUND = b'{"error":{"message":"not found"}}'


class PassThrough:
    """A pass-through proxy ASGI app for ``upstream`` (a base URL ending in /v1)."""

    def __init__(self, upstream: str, key: str = "sk-sandbox") -> None:
        self.url = yarl.URL(f"{upstream}/chat/completions")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

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
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=512, limit_per_host=0),
                    headers=self.headers,
                    skip_auto_headers=("Accept-Encoding",),
                    auto_decompress=False,
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
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


def main() -> None:
    """Run the pass-through proxy until interrupted."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--upstream", default="http://127.0.0.1:8081/v1")
    args = parser.parse_args()
    serve_forever(PassThrough(args.upstream), "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
