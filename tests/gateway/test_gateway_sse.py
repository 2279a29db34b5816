"""The stream tap: event splitting at any chunk boundary, answer, usage, dropping, errors."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tara.gateway.sse import StreamTap, error_event, parse_completion


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def delta(text: str, index: int = 0) -> bytes:
    return event({"choices": [{"index": index, "delta": {"content": text}}], "usage": None})


USAGE = event({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3}})
DONE = b"data: [DONE]\n\n"
STREAM = (
    delta("") + delta("Namaste") + delta(", ") + delta("x", index=1) + delta("Ravi") + USAGE + DONE
)


def run(tap: StreamTap, pieces: list[bytes]) -> bytes:
    return b"".join(tap.feed(p) for p in pieces) + tap.flush()


def test_whole_stream_in_one_chunk_passes_unchanged_when_usage_wanted() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    assert run(tap, [STREAM]) == STREAM
    assert tap.answer == "Namaste, Ravi"
    assert (tap.prompt_tokens, tap.completion_tokens) == (11, 3)
    assert tap.done
    assert tap.content_seen
    assert tap.error is None


def test_usage_only_chunk_is_dropped_when_client_did_not_ask() -> None:
    tap = StreamTap(drop_usage_chunk=True)
    assert run(tap, [STREAM]) == STREAM.replace(USAGE, b"")
    assert tap.completion_tokens == 3


@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    tap = StreamTap(drop_usage_chunk=True)
    assert run(tap, pieces) == STREAM.replace(USAGE, b"")
    assert tap.answer == "Namaste, Ravi"


def test_partial_event_is_held_back_until_complete() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    first = delta("a")
    assert tap.feed(first[:10]) == b""
    assert not tap.content_seen
    assert tap.feed(first[10:]) == first
    assert tap.content_seen


def test_crlf_framing_and_comments() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    out = run(tap, [b": keep-alive\r\n\r\n", delta("hi").replace(b"\n", b"\r\n"), DONE])
    assert out == b": keep-alive\n\n" + delta("hi") + DONE
    assert tap.answer == "hi"


def test_error_event_and_junk_are_forwarded_and_noted() -> None:
    tap = StreamTap(drop_usage_chunk=True)
    err = error_event("boom", "upstream_error", "x")
    out = run(tap, [b"data: not json\n\n", b"data: [1]\n\n", err])
    assert out == b"data: not json\n\n" + b"data: [1]\n\n" + err
    assert tap.error == {"message": "boom", "type": "upstream_error", "code": "x", "param": None}


def test_multiline_data_and_tool_calls_count_as_content() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    payload = orjson.dumps({"choices": [{"delta": {"tool_calls": [{"id": "t"}]}}]})
    ev = b"event: x\ndata: " + payload + b"\n\n"
    assert tap.feed(ev) == ev
    assert tap.content_seen
    assert tap.answer == ""


def test_unterminated_tail_is_flushed_and_observed() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    tail = delta("end")[:-2]
    assert tap.feed(tail) == b""
    assert tap.flush() == tail
    assert tap.answer == "end"


def test_parse_completion() -> None:
    body = orjson.dumps(
        {
            "choices": [{"message": {"role": "assistant", "content": "4"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }
    )
    assert parse_completion(body) == ("4", 5, 1)
    assert parse_completion(b"nope") == (None, None, None)
    assert parse_completion(b"[]") == (None, None, None)
    assert parse_completion(b'{"choices": [], "usage": {"prompt_tokens": "x"}}') == (
        None,
        None,
        None,
    )
