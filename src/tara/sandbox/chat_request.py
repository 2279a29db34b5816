"""Parsing and validating a chat completion request body, errors as data.

Only what the sandbox uses is checked, with OpenAI's wording and error
codes; unknown fields (``temperature``, ``user``, ``tools`` ...) are accepted
and ignored, as a forgiving upstream would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tara.sandbox.errors import ApiError, bad_request, json_object, missing

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a chat completion request the sandbox acts on."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    metadata: Any


def _invalid_type(param: str, expected: str) -> ApiError:
    return bad_request(f"Invalid type for '{param}': expected {expected}.", param, "invalid_type")


def _check_messages(messages: Any) -> ApiError | None:
    if not isinstance(messages, list):
        return _invalid_type("messages", "an array")
    if not messages:
        msg = "Invalid 'messages': empty array. Expected an array with minimum length 1."
        return bad_request(msg, "messages", "empty_array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return _invalid_type(f"messages[{i}]", "an object")
        role = message.get("role")
        if role not in ROLES:
            if role is None:
                return missing(f"messages[{i}].role")
            supported = ", ".join(f"'{r}'" for r in sorted(ROLES))
            msg = f"Invalid value: '{role}'. Supported values are: {supported}."
            return bad_request(msg, f"messages[{i}].role", "invalid_value")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            return _invalid_type(f"messages[{i}].content", "a string or an array of parts")
    return None


def _max_tokens(body: dict[str, Any]) -> int | ApiError | None:
    for param in ("max_completion_tokens", "max_tokens"):
        value = body.get(param)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            return _invalid_type(param, "an integer")
        if value < 1:
            msg = f"Invalid '{param}': integer below minimum value. Expected a value >= 1."
            return bad_request(msg, param, "integer_below_min_value")
        return value
    return None


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool] | ApiError:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        return _invalid_type("stream", "a boolean")
    options = body.get("stream_options")
    if options is None:
        return bool(stream), False
    if not isinstance(options, dict):
        return _invalid_type("stream_options", "an object")
    if not stream:
        msg = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return bad_request(msg, "stream_options", "invalid_value")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        return _invalid_type("stream_options.include_usage", "a boolean")
    return True, bool(include_usage)


def parse_chat_request(body: bytes) -> ChatRequest | ApiError:
    """The request, or the 400 to answer it with."""
    data = json_object(body, bad_request("The request body must be a JSON object."))
    if isinstance(data, ApiError):
        return data
    model = data.get("model")
    if model is None:
        return missing("model")
    if not isinstance(model, str):
        return _invalid_type("model", "a string")
    if "messages" not in data:
        return missing("messages")
    messages = data["messages"]
    problem = _check_messages(messages)
    if problem is not None:
        return problem
    flags = _stream_flags(data)
    if isinstance(flags, ApiError):
        return flags
    max_tokens = _max_tokens(data)
    if isinstance(max_tokens, ApiError):
        return max_tokens
    return ChatRequest(
        model=model,
        messages=messages,
        stream=flags[0],
        include_usage=flags[1],
        max_tokens=max_tokens,
        metadata=data.get("metadata"),
    )
