"""The stream tap's corners, one exact expectation each, through its public interface.

``test_gateway_sse.py`` checks the tap against a plain reading of the spec
over recorded streams; these pin the cases those streams never hold (each
one a change to ``gateway/sse.py`` that ``scripts/mutation`` found no test
noticed): reads that end in CR then bring a lone LF, blank-line runs before
odd field lines, choices that are not a list, empty or non-string content,
token counts at their limits, completions without usage or message.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tara.gateway.sse import MAX_TOKENS, StreamTap, parse_completion


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def feed(pieces: list[bytes], *, drop_usage: bool = False) -> tuple[StreamTap, list[bytes]]:
    """A fresh tap fed ``pieces``; what it returned for each read."""
    tap = StreamTap(drop_usage_chunk=drop_usage)
    return tap, [tap.feed(p) for p in pieces]


# -- framing ---------------------------------------------------------------------------


def test_a_stream_cut_before_done_is_not_done() -> None:
    tap, _ = feed([event({"choices": [{"index": 0, "delta": {"content": "Nam"}}]})])
    assert (tap.done, tap.answer, tap.error) == (False, "Nam", None)


def test_a_cr_then_an_lf_is_one_line_end_and_the_next_lf_another() -> None:
    # "data: a" CR | LF | LF: the first LF completes the CRLF, the second ends the event.
    _, out = feed([b"data: a\r", b"\n", b"\n"])
    assert out == [b"", b"", b"data: a\n\n"]


def test_extra_blank_lines_between_events_are_forwarded_as_one() -> None:
    _, out = feed([b"data: 1\n\n", b"\ndata: 2\n\n", b"\n\n\ndata: 3\n\n"])
    assert out == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]


@pytest.mark.parametrize(
    "line",
    [
        b" data: x",  # a leading space makes the field " data", not "data"
        b"\tdata: x",
        b"X-trace: 7",
        b"\x0bdata: x",
    ],
)
def test_a_field_line_after_blank_lines_is_forwarded_exactly(line: bytes) -> None:
    tap, out = feed([b"data: 1\n\n", b"\n" + line + b"\n\n"])
    assert out == [b"data: 1\n\n", line + b"\n\n"]
    tap, out = feed([b"data: 1\n\n\n" + line + b"\n\n"])  # the run inside one read
    assert out == [b"data: 1\n\n" + line + b"\n\n"]
    assert tap.answer == ""


def test_several_data_lines_are_joined_with_newlines() -> None:
    tap, out = feed([b'data: {"choices":\ndata:[{"delta":\ndata: {"content": "hi"}}]}\n\n'])
    assert tap.answer == "hi"
    assert out == [b'data: {"choices":\ndata:[{"delta":\ndata: {"content": "hi"}}]}\n\n']


def test_data_without_a_space_after_the_colon() -> None:
    tap, _ = feed([b'data:{"choices":[{"delta":{"content":" x"}}]}\n\n', b"data:[DONE]\n\n"])
    assert (tap.answer, tap.done) == (" x", True)


# -- choices and content ---------------------------------------------------------------


def test_choice_one_before_choice_zero_keeps_choice_zero() -> None:
    two = {
        "choices": [
            {"index": 1, "delta": {"content": "B"}},
            {"index": 0, "delta": {"content": "A"}},
        ]
    }
    tap, _ = feed([event(two)])
    assert tap.answer == "A"


def test_every_entry_for_choice_zero_counts_even_after_one_without_a_delta() -> None:
    chunk = {"choices": [{"index": 0, "delta": None}, {"index": 0, "delta": {"content": "a"}}]}
    tap, _ = feed([event(chunk)])
    assert (tap.answer, tap.content_seen) == ("a", True)


@pytest.mark.parametrize("choices", [1, "abc", {"index": 0}, True])
def test_choices_that_are_not_a_list_are_forwarded_and_ignored(choices: Any) -> None:
    chunk = event({"choices": choices, "usage": {"prompt_tokens": 4}})
    tap, out = feed([chunk])
    assert out == [chunk]
    assert (tap.answer, tap.content_seen, tap.prompt_tokens) == ("", False, 4)


def test_an_empty_content_delta_is_not_the_first_token() -> None:
    # OpenAI's first chunk: the role and an empty content.
    first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    tap, _ = feed([event(first)])
    assert tap.content_seen is False
    assert tap.answer == ""


@pytest.mark.parametrize("content", [5, ["a"], {"text": "a"}, True])
def test_content_that_is_not_a_string_is_not_text(content: Any) -> None:
    tap, _ = feed([event({"choices": [{"index": 0, "delta": {"content": content}}]})])
    assert (tap.answer, tap.content_seen) == ("", False)


def test_a_stream_without_content_has_seen_none() -> None:
    tap, _ = feed([b"data: [DONE]\n\n"])
    assert tap.content_seen is False
    assert tap.done is True


# -- token counts ----------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, MAX_TOKENS])
def test_token_counts_at_the_limits_are_kept(count: int) -> None:
    usage = {"prompt_tokens": count, "completion_tokens": count}
    tap, _ = feed([event({"choices": [], "usage": usage})], drop_usage=True)
    assert (tap.prompt_tokens, tap.completion_tokens) == (count, count)
    body = orjson.dumps({"choices": [{"message": {"content": "4"}}], "usage": usage})
    assert parse_completion(body) == ("4", count, count)


def test_a_later_usage_without_a_count_keeps_the_earlier_count() -> None:
    tap, _ = feed(
        [
            event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
            event({"choices": [], "usage": {"prompt_tokens": None}}),
        ]
    )
    assert (tap.prompt_tokens, tap.completion_tokens) == (7, 2)


# -- non-streamed completions ----------------------------------------------------------


def test_a_completion_without_usage_has_no_token_counts() -> None:
    body = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": "4"}}]})
    assert parse_completion(body) == ("4", None, None)
    assert parse_completion(orjson.dumps({"choices": [], "usage": None})) == (None, None, None)


@pytest.mark.parametrize("message", ["hi", None, 5, ["hi"]])
def test_a_completion_whose_message_is_not_an_object_has_no_answer(message: Any) -> None:
    body = orjson.dumps({"choices": [{"message": message}], "usage": {"prompt_tokens": 3}})
    assert parse_completion(body) == (None, 3, None)


@pytest.mark.parametrize("content", [None, 5, ["a"]])
def test_a_completion_whose_content_is_not_a_string_has_no_answer(content: Any) -> None:
    body = orjson.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
    assert parse_completion(body) == (None, None, None)


# -- giving up on an event that outgrows the bound -------------------------------------


def test_giving_up_forwards_and_observes_the_complete_events_before_the_oversized_one() -> None:
    tap = StreamTap(drop_usage_chunk=False, max_pending=16)
    first = event({"choices": [{"index": 0, "delta": {"content": "A"}}]})
    second = event({"choices": [{"index": 0, "delta": {"content": "B"}}]})
    out = tap.feed(first + b"\n\n" + second + b"data: " + b"x" * 20)
    assert out == first + second + b"data: " + b"x" * 20
    assert (tap.gave_up, tap.answer, tap.content_seen) == (True, "AB", True)
    assert tap.feed(b"\n\nanything\r\n") == b"\n\nanything\r\n"  # relayed as it comes


def test_an_unfinished_event_of_exactly_the_bound_is_still_held() -> None:
    tap = StreamTap(drop_usage_chunk=False, max_pending=16)
    assert tap.feed(b"data: 0123456789") == b""  # 16 bytes
    assert tap.gave_up is False
    assert tap.feed(b"\n\n") == b"data: 0123456789\n\n"
