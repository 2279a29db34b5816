"""Checking an uploaded fine-tuning file the way OpenAI does: chat-format JSONL.

The upload route feeds the file through :class:`ChatFileChecker` line by
line as it arrives, so memory stays flat whatever the file's size. Only the
first problem is kept: it becomes the ``error`` of a job that uses the file,
worded like OpenAI's ("Invalid file format. Line 3: ...").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tara.sandbox.tokens import prompt_tokens

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class FileCheck:
    """What the sandbox learned about an uploaded file."""

    examples: int
    tokens: int
    """Tokens over every message of every example (the sandbox's tokenizer)."""
    problem: str | None
    """The first format problem, or None if every line is a valid chat example."""


def example_problem(data: Any) -> str | None:
    """Why one decoded JSONL line is not a chat training example, or None if it is."""
    if not isinstance(data, dict):
        return "each line must be a JSON object"
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return 'the key "messages" must be a non-empty list'
    assistant = False
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            return f"message {i} is not an object"
        role = message.get("role")
        if role not in ROLES:
            return f"message {i} has an unrecognised role {role!r}"
        content = message.get("content")
        if not isinstance(content, str) and not (role == "assistant" and "tool_calls" in message):
            return f'message {i} ("{role}") has no text "content"'
        assistant = assistant or role == "assistant"
    if not assistant:
        return "the example has no assistant message to learn from"
    return None


class ChatFileChecker:
    """Feed it a file's bytes in chunks, then :meth:`finish` for the verdict."""

    def __init__(self) -> None:
        self._pending = b""
        self._line = 0
        self._examples = 0
        self._tokens = 0
        self._problem: str | None = None

    def feed(self, chunk: bytes) -> None:
        """Check every complete line in ``chunk`` (a partial last line waits for more)."""
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        for line in lines:
            self._check_line(line)

    def _check_line(self, raw: bytes) -> None:
        self._line += 1
        if self._problem is not None or not raw.strip():
            return
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._problem = f"Invalid file format. Line {self._line}: not valid JSON."
            return
        problem = example_problem(data)
        if problem is not None:
            self._problem = f"Invalid file format. Line {self._line}: {problem}."
            return
        self._examples += 1
        self._tokens += prompt_tokens(data["messages"])

    def finish(self) -> FileCheck:
        """The verdict over everything fed (a last line without a newline included)."""
        if self._pending:
            self._check_line(self._pending)
            self._pending = b""
        problem = self._problem
        if problem is None and self._examples == 0:
            problem = "Invalid file format. The file holds no training examples."
        return FileCheck(self._examples, self._tokens, problem)


def check_bytes(content: bytes) -> FileCheck:
    """Check a whole file at once (tests and small uploads)."""
    checker = ChatFileChecker()
    checker.feed(content)
    return checker.finish()
