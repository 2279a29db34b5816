"""Encoding answers as OpenAI ``chat.completion`` objects and SSE chunk streams.

The chunk encoder serialises the fields shared by every chunk of a stream
once and splices each token in, because a benchmark pushes tens of
thousands of chunks a second through here.
"""

from __future__ import annotations

from typing import Any

import orjson

FINGERPRINT = "fp_tara_sandbox"
DONE = b"data: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ChunkEncoder:
    """``data: {chat.completion.chunk}\\n\\n`` lines of one streamed completion."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        head = orjson.dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": FINGERPRINT,
            }
        )
        self._head = b"data: " + head[:-1]
        self._prefix = self._head + b',"choices":[{"index":0,"delta":'
        # With include_usage, OpenAI sends "usage": null on every chunk but the last.
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._open = b',"logprobs":null,"finish_reason":null}]' + self._tail

    def role(self) -> bytes:
        """The first chunk: the assistant role and empty content."""
        return self._prefix + b'{"role":"assistant","content":"","refusal":null}' + self._open

    def content(self, token: str) -> bytes:
        """A chunk carrying one token."""
        return self._prefix + b'{"content":' + orjson.dumps(token) + b"}" + self._open

    def finish(self, reason: str) -> bytes:
        """The chunk with an empty delta and the finish reason."""
        return (
            self._prefix
            + b'{},"logprobs":null,"finish_reason":'
            + orjson.dumps(reason)
            + b"}]"
            + self._tail
        )

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The final chunk of an ``include_usage`` stream: no choices, only usage."""
        body = orjson.dumps(usage(prompt_tokens, completion_tokens))
        return self._head + b',"choices":[],"usage":' + body + b"}\n\n"


def completion(
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """A non-streamed ``chat.completion`` object as JSON bytes."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }
    return orjson.dumps(body)
