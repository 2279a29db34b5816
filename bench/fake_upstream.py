"""A cheap, exact OpenAI-compatible upstream for the load benchmarks.

``tara sandbox`` composes real answers and costs CPU per token; here the
upstream shares a core with the load generator, so it must cost next to
nothing and keep time exactly. This one is a raw asyncio protocol on uvloop:
it answers any ``POST`` after the first-token delay with a fixed chat
completion, or (when the body asks for ``"stream":true``) with ``--chunks``
SSE content chunks spread over the stream time (the first after the delay),
a usage chunk when ``include_usage`` was asked for, and ``[DONE]``. A model
named ``bench-t<ms>-s<ms>...`` (``bench-t60-s1000``, ``bench-t60-s1000-canary``)
sets both times per request; other models get ``--ttft-ms`` and ``--stream-ms``. The body length
is known up front, so responses carry ``Content-Length`` and connections are
kept alive. ``--no-blank-lines`` sends a stream whose events never end (no
blank line): the SSE tap's buffer bound is tested with it.

Run: ``python bench/fake_upstream.py --port 8081 --ttft-ms 60 --chunks 20 --stream-ms 1000``
"""

from __future__ import annotations

import argparse
import asyncio
import re

import orjson
import uvloop

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
_MODELS = b'{"object":"list","data":[{"id":"bench-fast","object":"model"}]}'
_TIMES = re.compile(rb'"model":\s*"bench-t(\d+)-s(\d+)')


def completion_body() -> bytes:
    """A non-streamed chat completion of a short answer, with usage."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "bench-fast",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "7 times 8 is 56. " * 5},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 31, "completion_tokens": 40, "total_tokens": 71},
        }
    )


def stream_events(chunks: int, usage: bool, blank_lines: bool = True) -> list[bytes]:
    """The SSE events of one streamed answer: ``chunks`` content chunks, usage, ``[DONE]``."""
    end = b"\n\n" if blank_lines else b"\n"
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0}
    base["model"] = "bench-fast"
    events = []
    for i in range(chunks):
        delta = {"content": f"word{i} "}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        events.append(b"data: " + orjson.dumps({**base, "choices": [choice]}) + end)
    if usage:
        tokens = {"prompt_tokens": 31, "completion_tokens": chunks, "total_tokens": 31 + chunks}
        events.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": tokens}) + end)
    events.append(b"data: [DONE]" + end)
    return events


class Upstream(asyncio.Protocol):
    """One keep-alive connection: requests in, timed answers out."""

    def __init__(self, opts: argparse.Namespace, cache: dict[str, object]) -> None:
        self.opts = opts
        self.cache = cache
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = _content_length(head)
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[head_end + 4 : total]
            self.buffer = self.buffer[total:]
            if head.startswith(b"get"):
                self._write(_HEAD % (b"application/json", len(_MODELS)) + _MODELS)
            else:
                asyncio.get_running_loop().create_task(self._answer(body))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def _answer(self, body: bytes) -> None:
        opts = self.opts
        ttft_ms, stream_ms = opts.ttft_ms, opts.stream_ms
        times = _TIMES.search(body)
        if times is not None:
            ttft_ms, stream_ms = float(times[1]), float(times[2])
        await asyncio.sleep(ttft_ms / 1000)
        if b'"stream":true' not in body.replace(b" ", b""):
            plain = self.cache["plain"]
            assert isinstance(plain, bytes)
            self._write(_HEAD % (b"application/json", len(plain)) + plain)
            return
        key = "usage" if b"include_usage" in body else "no-usage"
        events = self.cache[key]
        assert isinstance(events, list)
        size = sum(len(e) for e in events)
        self._write(_HEAD % (b"text/event-stream", size) + events[0])
        gap = stream_ms / 1000 / max(1, opts.chunks - 1)
        for i, event in enumerate(events[1:], 1):
            if i < opts.chunks and gap > 0:
                await asyncio.sleep(gap)
            self._write(event)


def _content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased request head (0 if none)."""
    at = head.find(b"content-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at)
    return int(head[at + 15 : end if end >= 0 else len(head)])


def main() -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--ttft-ms", type=float, default=60.0)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--stream-ms", type=float, default=1000.0, help="first to last chunk")
    parser.add_argument("--no-blank-lines", action="store_true", help="events never end")
    opts = parser.parse_args()
    blank = not opts.no_blank_lines
    cache: dict[str, object] = {
        "plain": completion_body(),
        "usage": stream_events(opts.chunks, True, blank),
        "no-usage": stream_events(opts.chunks, False, blank),
    }

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Upstream(opts, cache), "127.0.0.1", opts.port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
