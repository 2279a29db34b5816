"""Watching a chat-completions SSE stream as it passes through.

:class:`StreamTap` is fed the upstream's bytes as they arrive and returns the
bytes to forward: whole events only, unchanged, except the usage-only chunk
when the client did not ask for usage (the gateway asks the upstream for it
to count tokens). On the way it reassembles the answer text of choice 0,
notes the first content token, the token counts, ``[DONE]`` and any error
event. Each event's JSON is parsed once, with orjson.
"""

from __future__ import annotations

from typing import Any

import orjson

_EVENT_END = b"\n\n"
_DATA = b"data:"
_DONE = b"[DONE]"


class StreamTap:
    """Incremental SSE splitter and observer for one chat-completions stream."""

    __slots__ = (
        "_buffer",
        "_drop_usage",
        "_parts",
        "completion_tokens",
        "content_seen",
        "done",
        "error",
        "prompt_tokens",
    )

    def __init__(self, *, drop_usage_chunk: bool) -> None:
        self._buffer = b""
        self._drop_usage = drop_usage_chunk
        self._parts: list[str] = []
        self.content_seen = False
        """Whether a content (or tool-call) delta has gone by."""
        self.done = False
        """Whether ``data: [DONE]`` has gone by."""
        self.error: Any = None
        """The ``error`` member of an error event, if the stream carried one."""
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    @property
    def answer(self) -> str:
        """The text of choice 0 so far."""
        return "".join(self._parts)

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes from upstream; return the complete events to forward."""
        if b"\r" in data:
            # CRLF framing is legal SSE; normalising keeps the split to one separator.
            data = data.replace(b"\r\n", b"\n")
        buffer = self._buffer + data if self._buffer else data
        end = buffer.rfind(_EVENT_END)
        if end < 0:
            self._buffer = buffer
            return b""
        end += 2
        complete, self._buffer = buffer[:end], buffer[end:]
        kept: list[bytes] | None = None
        events = complete.split(_EVENT_END)
        events.pop()  # the empty remainder after the last separator
        for i, event in enumerate(events):
            keep = self._observe(event)
            if kept is not None:
                if keep:
                    kept.append(event + _EVENT_END)
            elif not keep:
                # First dropped event: from here on forward the others one by one.
                kept = [e + _EVENT_END for e in events[:i]]
        if kept is None:
            return complete
        return b"".join(kept)

    def flush(self) -> bytes:
        """The unterminated tail left at the end of the stream (forwarded as is)."""
        tail, self._buffer = self._buffer, b""
        if tail:
            self._observe(tail)
        return tail

    def _observe(self, event: bytes) -> bool:
        """Note what the event says; ``False`` when it must not be forwarded."""
        payload = _data(event)
        if payload is None:
            return True
        if payload == _DONE:
            self.done = True
            return True
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        if "error" in chunk:
            self.error = chunk["error"]
            return True
        choices = chunk.get("choices")
        if choices and isinstance(choices, list):
            self._choices(choices)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage(usage)
            if self._drop_usage and not choices:
                return False
        return True

    def _choices(self, choices: list[Any]) -> None:
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._parts.append(content)
                self.content_seen = True
            elif delta.get("tool_calls"):
                self.content_seen = True

    def _usage(self, usage: dict[str, Any]) -> None:
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if isinstance(prompt, int):
            self.prompt_tokens = prompt
        if isinstance(completion, int):
            self.completion_tokens = completion


def _data(event: bytes) -> bytes | None:
    """The joined ``data:`` lines of one event, or ``None`` if it has none."""
    if event.startswith(_DATA) and b"\n" not in event:
        return event[5:].lstrip(b" ")
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(_DATA)]
    if not lines:
        return None
    return b"\n".join(lines)


def error_event(message: str, type_: str, code: str | None) -> bytes:
    """An SSE event carrying an OpenAI-shaped error (the SDK raises on it)."""
    body = orjson.dumps({"error": {"message": message, "type": type_, "code": code, "param": None}})
    return b"data: " + body + b"\n\n"


def parse_completion(body: bytes) -> tuple[str | None, int | None, int | None]:
    """``(answer, prompt_tokens, completion_tokens)`` of a non-streamed completion body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    answer = None
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            answer = message["content"]
    usage = data.get("usage")
    prompt = completion = None
    if isinstance(usage, dict):
        p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
        prompt = p if isinstance(p, int) else None
        completion = c if isinstance(c, int) else None
    return answer, prompt, completion
