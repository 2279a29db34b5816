"""Validating chat requests: what is accepted, and the 400 each mistake gets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tara.sandbox.chat_request import ChatRequest, parse_chat_request
from tara.sandbox.errors import ApiError

USER = [{"role": "user", "content": "hi"}]


def _parse(body: Any) -> ChatRequest | ApiError:
    return parse_chat_request(body if isinstance(body, bytes) else orjson.dumps(body))


def test_minimal_request() -> None:
    parsed = _parse({"model": "m", "messages": USER})
    assert parsed == ChatRequest("m", USER, False, False, None, None)


def test_streaming_with_usage_and_limits() -> None:
    parsed = _parse(
        {
            "model": "m",
            "messages": USER,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 50,
            "max_completion_tokens": 7,
            "metadata": {"subject": "math"},
            "temperature": 0.2,
        }
    )
    assert isinstance(parsed, ChatRequest)
    assert (parsed.stream, parsed.include_usage, parsed.max_tokens) == (True, True, 7)
    assert parsed.metadata == {"subject": "math"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, None),
        ([1, 2], None, None),
        ({"messages": USER}, "model", "missing_required_parameter"),
        ({"model": 3, "messages": USER}, "model", "invalid_type"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "m", "messages": []}, "messages", "empty_array"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        (
            {"model": "m", "messages": [{"content": "x"}]},
            "messages[0].role",
            "missing_required_parameter",
        ),
        ({"model": "m", "messages": [{"role": "robot"}]}, "messages[0].role", "invalid_value"),
        (
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_type",
        ),
        ({"model": "m", "messages": USER, "stream": "yes"}, "stream", "invalid_type"),
        (
            {"model": "m", "messages": USER, "stream_options": {"include_usage": True}},
            "stream_options",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": USER, "stream": True, "stream_options": 1},
            "stream_options",
            "invalid_type",
        ),
        (
            {
                "model": "m",
                "messages": USER,
                "stream": True,
                "stream_options": {"include_usage": "y"},
            },
            "stream_options.include_usage",
            "invalid_type",
        ),
        (
            {"model": "m", "messages": USER, "max_tokens": 0},
            "max_tokens",
            "integer_below_min_value",
        ),
        ({"model": "m", "messages": USER, "max_tokens": True}, "max_tokens", "invalid_type"),
        (
            {"model": "m", "messages": USER, "max_completion_tokens": "9"},
            "max_completion_tokens",
            "invalid_type",
        ),
    ],
)
def test_bad_requests_name_the_parameter(body: Any, param: str | None, code: str | None) -> None:
    error = _parse(body)
    assert isinstance(error, ApiError)
    assert error.status == 400
    assert error.param == param
    assert error.code == code
