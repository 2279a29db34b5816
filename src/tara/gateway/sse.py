"""Watching a chat-completions SSE stream as it passes through.

:class:`StreamTap` is fed the upstream's bytes as they arrive and returns the
bytes to forward. It frames events as the SSE spec does, whatever the reads:
lines end with CR, LF or CRLF (a CRLF split between two reads is one line
end), a blank line ends an event, ``data:`` lines (one optional space after
the colon) are joined with newlines, comments and other fields are passed on.
Line ends are forwarded as LF, so a stream of LF lines (OpenAI's) goes
through byte for byte; a run of blank lines, which dispatches nothing, is
forwarded as one. Every event is forwarded unchanged except usage the client
did not ask for (the gateway asks the upstream for it to count tokens): the
usage-only chunk is dropped, usage riding on a chunk with choices is removed.
An event the stream cut off before its blank line is discarded, as a client
would. On the way the tap reassembles the answer text of choice 0, notes the
first content token, the token counts, ``[DONE]`` and any error event; each
event's JSON is parsed once, with orjson.

Tests for a byte string use ``find``, never ``in``: on Python 3.11, ``in``
on bytes first tries its operand as an integer and builds and clears a
``TypeError`` each time, which cost more than the rest of the test (~2,000
instructions; 5% of a streamed request's instructions, three per chunk).

The tap holds an unfinished event until its blank line comes, at most
``max_pending`` bytes of it (``upstream.max_sse_event_bytes``). An upstream
that sends more without ending an event is not speaking SSE as the tap
understands it: the tap gives up (:attr:`StreamTap.gave_up`), forwards what
it holds and from then on relays every byte as it comes, unobserved.
"""

from __future__ import annotations

from typing import Any

import orjson

_EVENT_END = b"\n\n"
_LF = ord("\n")
_BLANK_RUN = b"\n\n\n"
_DATA = b"data:"
_DONE = b"[DONE]"
_BOM = b"\xef\xbb\xbf"
MAX_PENDING_BYTES = 1024 * 1024
"""Default bound of an unfinished event the tap holds (``upstream.max_sse_event_bytes``)."""
MAX_TOKENS = 2**31 - 1
"""Largest token count kept: what the interaction log's integer columns hold."""


class StreamTap:
    """Incremental SSE framer and observer for one chat-completions stream."""

    __slots__ = (
        "_buffer",
        "_cr",
        "_drop_usage",
        "_max_pending",
        "_parts",
        "completion_tokens",
        "content_seen",
        "done",
        "error",
        "gave_up",
        "prompt_tokens",
    )

    def __init__(self, *, drop_usage_chunk: bool, max_pending: int = MAX_PENDING_BYTES) -> None:
        self._buffer = b""
        self._cr = False
        self._drop_usage = drop_usage_chunk
        self._max_pending = max_pending
        self.gave_up = False
        """Whether an event outgrew ``max_pending``: the rest of the stream passes unobserved."""
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
        if self.gave_up:
            return data
        if self._cr:
            # The last read ended in CR: an LF opening this one ends that same line.
            self._cr = False
            if data.startswith(b"\n"):
                data = data[1:]
        if data.find(b"\r") >= 0:
            self._cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        last = len(data) - 2
        if last > 0 and not self._buffer and data.find(_EVENT_END) == last and data[0] != _LF:
            # The common read: exactly one whole event, nothing held. Nothing to frame.
            replacement = self._observe(data[:-2])
            return data if replacement is None else replacement
        buffer = self._buffer + data if self._buffer else data
        if buffer[:1] == b"\n":
            # Just after an event's end (or the stream's start) a line end is a blank
            # line that dispatches nothing.
            buffer = buffer.lstrip(b"\n")
        events = buffer.split(_EVENT_END)
        rest = self._buffer = events.pop()
        if len(rest) > self._max_pending:
            return self._give_up(events, rest)
        if not events:
            return b""
        if buffer.find(_BLANK_RUN) >= 0:
            return self._forward([e for e in (e.lstrip(b"\n") for e in events) if e], [])
        for i, event in enumerate(events):
            replacement = self._observe(event)
            if replacement is not None:
                # Rare: an event is rewritten or dropped; observe the rest as we forward.
                return self._forward(events[i + 1 :], events[:i], replacement)
        return buffer[: len(buffer) - len(rest)] if rest else buffer

    def _give_up(self, events: list[bytes], rest: bytes) -> bytes:
        """Forward the complete ``events`` (observed) and the unfinished ``rest``; stop watching."""
        self.gave_up = True
        self._buffer = b""
        complete = [e for e in (e.lstrip(b"\n") for e in events) if e]
        return (self._forward(complete, []) if complete else b"") + rest

    def _forward(
        self, events: list[bytes], before: list[bytes], changed: bytes | None = None
    ) -> bytes:
        """Observe ``events`` and join what to forward: ``before`` and ``changed`` first."""
        out = [e + _EVENT_END for e in before]
        if changed is not None:
            out.append(changed)
        for event in events:
            replacement = self._observe(event)
            out.append(event + _EVENT_END if replacement is None else replacement)
        return b"".join(out)

    def _observe(self, event: bytes) -> bytes | None:
        """Note what the event says; ``None`` to forward it as is, else what to send instead."""
        # One ``data: `` line is almost every event: slicing once keeps the copy to one.
        if event.startswith(b"data: ") and event.find(b"\n") < 0:
            payload = event[6:]
        else:
            data = _data(event)
            if data is None:
                return None
            payload = data
        if payload == _DONE:
            self.done = True
            return None
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        # orjson builds plain dicts and lists: exact type checks are enough, and cheaper.
        if type(chunk) is not dict:
            return None
        if "error" in chunk:
            self.error = chunk["error"]
            return None
        choices = chunk.get("choices")
        if choices and type(choices) is list:
            self._choices(choices)
        usage = chunk.get("usage")
        if type(usage) is dict:
            self._usage(usage)
            if self._drop_usage:
                if not choices:
                    return b""
                del chunk["usage"]
                return b"data: " + orjson.dumps(chunk) + _EVENT_END
        return None

    def _choices(self, choices: list[Any]) -> None:
        for choice in choices:
            if type(choice) is not dict or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if type(delta) is not dict:
                continue
            content = delta.get("content")
            if content and type(content) is str:
                self._parts.append(content)
                self.content_seen = True
            elif delta.get("tool_calls"):
                self.content_seen = True

    def _usage(self, usage: dict[str, Any]) -> None:
        prompt = _tokens(usage.get("prompt_tokens"))
        completion = _tokens(usage.get("completion_tokens"))
        if prompt is not None:
            self.prompt_tokens = prompt
        if completion is not None:
            self.completion_tokens = completion


def _tokens(value: Any) -> int | None:
    """A token count the log can store, or ``None`` (``true``, ``11.5``, ``"11"``, ``-1``)."""
    return value if type(value) is int and 0 <= value <= MAX_TOKENS else None


def _data(event: bytes) -> bytes | None:
    """The joined ``data:`` values of one event, or ``None`` if it has none."""
    if event.find(b"\n") < 0:
        if event.startswith(b"data: "):
            return event[6:]
        if event.startswith(_DATA):
            return event[5:]
    if event.startswith(_BOM):
        event = event[3:]
    values = []
    for line in event.split(b"\n"):
        if line.startswith(b"data"):
            name, _, value = line.partition(b":")
            if name == b"data":
                values.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(values) if values else None


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
        prompt = _tokens(usage.get("prompt_tokens"))
        completion = _tokens(usage.get("completion_tokens"))
    return answer, prompt, completion
