"""The stream tap against the SSE spec: any line ending, any split across reads.

Recorded streams (``streams/*.sse``, from ``tara sandbox``) are rewritten into
every framing the spec allows (CR, LF, CRLF, mixed; ``data:`` without a space;
multi-line data; comments and other fields; extra blank lines) and fed to the
tap cut at every split point, and in arbitrary chunkings. Whatever the cuts,
the answer text, token counts and forwarded bytes must equal what a plain,
line-by-line reading of the spec (:func:`reference`) gives for the whole stream.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tara.gateway.sse import MAX_TOKENS, StreamTap, error_event, parse_completion

STREAMS = Path(__file__).parent / "streams"
RECORDED = {p.stem: p.read_bytes() for p in sorted(STREAMS.glob("*.sse"))}


def event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def delta(text: str, index: int = 0) -> bytes:
    return event({"choices": [{"index": index, "delta": {"content": text}}], "usage": None})


USAGE = event({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3}})
DONE = b"data: [DONE]\n\n"
STREAM = (
    delta("") + delta("Namaste") + delta(", ") + delta("x", index=1) + delta("Ravi") + USAGE + DONE
)


# -- the spec, read plainly -------------------------------------------------------------
@dataclass
class Seen:
    """What a reader of the whole stream sees, and what the tap must forward."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    done: bool
    forwarded: bytes


def _tokens(value: Any) -> int | None:
    ok = type(value) is int and 0 <= value <= MAX_TOKENS
    return value if ok else None


def blocks(stream: bytes) -> list[list[bytes]]:
    """The lines of each event that a blank line ended (a cut-off last one is discarded)."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    *lines, _unterminated = re.split(rb"\r\n|\r|\n", stream)
    found: list[list[bytes]] = []
    current: list[bytes] = []
    for line in lines:
        if line:
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def chunk_of(block: list[bytes]) -> Any:
    """The event's data: ``b"[DONE]"``, parsed JSON, or ``None``."""
    data = [
        value[1:] if value.startswith(b" ") else value
        for name, _, value in (line.partition(b":") for line in block)
        if name == b"data"
    ]
    if not data or b"\n".join(data) == b"[DONE]":
        return b"\n".join(data) or None
    try:
        return orjson.loads(b"\n".join(data))
    except orjson.JSONDecodeError:
        return None


def reference(stream: bytes, *, drop_usage: bool) -> Seen:
    """Line by line, as the SSE spec reads a stream (no chunking at all)."""
    seen = Seen("", None, None, False, b"")
    for block in blocks(stream):
        rendered = b"\n".join(block) + b"\n\n"
        chunk = chunk_of(block)
        seen.done = seen.done or chunk == b"[DONE]"
        if isinstance(chunk, dict) and "error" not in chunk:
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    delta = choice.get("delta")
                    content = delta.get("content") if isinstance(delta, dict) else None
                    seen.text += content if isinstance(content, str) else ""
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                prompt = _tokens(usage.get("prompt_tokens"))
                completion = _tokens(usage.get("completion_tokens"))
                seen.prompt_tokens = seen.prompt_tokens if prompt is None else prompt
                seen.completion_tokens = (
                    seen.completion_tokens if completion is None else completion
                )
                if drop_usage and not choices:
                    continue
                if drop_usage:
                    del chunk["usage"]
                    rendered = b"data: " + orjson.dumps(chunk) + b"\n\n"
        seen.forwarded += rendered
    return seen


def tapped(pieces: list[bytes], *, drop_usage: bool) -> Seen:
    tap = StreamTap(drop_usage_chunk=drop_usage)
    forwarded = b"".join(tap.feed(p) for p in pieces)
    return Seen(tap.answer, tap.prompt_tokens, tap.completion_tokens, tap.done, forwarded)


# -- framings the spec allows -----------------------------------------------------------
def _lines(stream: bytes) -> list[bytes]:
    return stream.split(b"\n")


def crlf(stream: bytes) -> bytes:
    return stream.replace(b"\n", b"\r\n")


def cr(stream: bytes) -> bytes:
    return stream.replace(b"\n", b"\r")


def mixed(stream: bytes) -> bytes:
    endings = (b"\r\n", b"\r", b"\n")
    lines = _lines(stream)
    out, previous = [], b""
    for i, line in enumerate(lines[:-1]):
        ending = endings[i % 3]
        if previous == b"\r" and not line and ending == b"\n":
            ending = b"\r\n"  # a CR then an LF would be one CRLF: one line end, not two
        out.append(line + ending)
        previous = ending
    return b"".join(out) + lines[-1]


def no_space(stream: bytes) -> bytes:
    return stream.replace(b"data: ", b"data:")


def multiline(stream: bytes) -> bytes:
    # JSON allows a newline between tokens; the spec joins data lines with one.
    return stream.replace(b'","', b'",\ndata: "')


def chatty(stream: bytes) -> bytes:
    events = stream.split(b"\n\n")
    noisy = [
        b": keep-alive\nid: " + str(i).encode() + b"\nevent: message\n" + e if e else e
        for i, e in enumerate(events)
    ]
    return b"\n\n\n".join(noisy)


def cut_mid_event(stream: bytes) -> bytes:
    return stream[: stream.rfind(b"\n\n", 0, len(stream) - 2) + 40]


FRAMINGS = [
    lambda s: s,
    crlf,
    cr,
    mixed,
    no_space,
    multiline,
    chatty,
    cut_mid_event,
    lambda s: crlf(chatty(multiline(s))),
]


def test_recordings_are_real_and_varied() -> None:
    assert set(RECORDED) == {"sandbox-english-cut", "sandbox-hindi-usage", "sandbox-tamil-no-usage"}
    whole = {name: reference(s, drop_usage=True) for name, s in RECORDED.items()}
    assert whole["sandbox-hindi-usage"].completion_tokens
    assert whole["sandbox-hindi-usage"].done
    assert whole["sandbox-tamil-no-usage"].prompt_tokens is None
    assert not whole["sandbox-english-cut"].done
    assert all(seen.text for seen in whole.values())


@pytest.mark.parametrize("name", sorted(RECORDED))
@pytest.mark.parametrize("framing", range(len(FRAMINGS)))
def test_framings_keep_the_meaning(name: str, framing: int) -> None:
    original = reference(RECORDED[name], drop_usage=False)
    framed = reference(FRAMINGS[framing](RECORDED[name]), drop_usage=False)
    if FRAMINGS[framing] is cut_mid_event:
        assert original.text.startswith(framed.text)
        return
    assert (framed.text, framed.prompt_tokens, framed.completion_tokens, framed.done) == (
        original.text,
        original.prompt_tokens,
        original.completion_tokens,
        original.done,
    )


@pytest.mark.parametrize("name", sorted(RECORDED))
@pytest.mark.parametrize("drop_usage", [True, False])
def test_every_split_point_of_a_recorded_stream_gives_the_same_result(
    name: str, drop_usage: bool
) -> None:
    stream = mixed(RECORDED[name])
    want = reference(stream, drop_usage=drop_usage)
    assert tapped([stream], drop_usage=drop_usage) == want
    for cut in range(1, len(stream)):
        assert tapped([stream[:cut], stream[cut:]], drop_usage=drop_usage) == want, cut


@pytest.mark.parametrize("name", sorted(RECORDED))
@pytest.mark.parametrize("framing", range(len(FRAMINGS)))
@pytest.mark.parametrize("drop_usage", [True, False])
def test_reads_of_one_whole_event_each_give_the_same_result(
    name: str, framing: int, drop_usage: bool
) -> None:
    # The tap's fast path: a read that is exactly one event and its blank line. Each read
    # is cut just after a blank line, and also one byte later and one byte sooner.
    stream = FRAMINGS[framing](RECORDED[name])
    ends = [
        i + len(blank)
        for blank in (b"\r\n\r\n", b"\n\n", b"\r\r")
        for i in range(len(stream))
        if stream.startswith(blank, i)
    ]
    want = reference(stream, drop_usage=drop_usage)
    for shift in (0, 1, -1):
        cuts = sorted({min(max(e + shift, 0), len(stream)) for e in ends})
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert tapped(pieces, drop_usage=drop_usage) == want, shift


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(RECORDED)),
    framing=st.integers(0, len(FRAMINGS) - 1),
    drop_usage=st.booleans(),
    data=st.data(),
)
def test_any_chunking_of_any_framing_gives_the_same_result(
    name: str, framing: int, drop_usage: bool, data: st.DataObject
) -> None:
    stream = FRAMINGS[framing](RECORDED[name])
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=40))))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert tapped(pieces, drop_usage=drop_usage) == reference(stream, drop_usage=drop_usage)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(RECORDED)),
    framing=st.integers(0, len(FRAMINGS) - 1),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8),
)
def test_a_usage_chunk_the_client_did_not_ask_for_is_never_forwarded(
    name: str, framing: int, sizes: list[int]
) -> None:
    stream = FRAMINGS[framing](RECORDED[name])
    pieces, at = [], 0
    while at < len(stream):
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(stream[at : at + size])
        at += size
    forwarded = tapped(pieces, drop_usage=True).forwarded
    assert b'"usage":{' not in forwarded
    assert b'"total_tokens"' not in forwarded


# -- any chunk, one whole event a read (the tap's fastest path) ---------------------------
ODD = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.floats(-1, 1) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["index", "delta", "content", "tool_calls", "x"]), inner)
    ),
    max_leaves=6,
)
"""Any JSON, its objects keyed like the parts of a chunk: what a part may be instead."""


def mostly(usual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four, else anything."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: usual if ok else ODD)


DELTA = st.fixed_dictionaries(
    {"content": mostly(st.text(max_size=6))},
    optional={"role": st.just("assistant"), "tool_calls": ODD},
)
CHOICE = st.fixed_dictionaries(
    {"delta": mostly(DELTA)},
    optional={"index": st.sampled_from([0, 0, 0, 1, 0.0, False, True, None, "0"])},
)
TOKENS = st.sampled_from([0, 7, -1, MAX_TOKENS, MAX_TOKENS + 1, True, "3", 2.0, None])
COUNTS = st.fixed_dictionaries({}, optional={"prompt_tokens": TOKENS, "completion_tokens": TOKENS})
CHUNK = st.fixed_dictionaries(
    {"id": st.text(max_size=4), "choices": mostly(st.lists(CHOICE, min_size=1, max_size=2))},
    optional={"usage": st.none() | COUNTS | ODD, "error": ODD},
)
"""Chunks like an upstream's, with any part of them odd now and then."""


def noticed(stream: bytes) -> tuple[bool, Any]:
    """Whether content (or a tool call) of choice 0 went by, and the last error, per the spec."""
    seen, error = False, None
    for chunk in (chunk_of(block) for block in blocks(stream)):
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            error = chunk["error"]
            continue
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    content = delta.get("content")
                    seen = seen or bool(
                        (content and isinstance(content, str)) or delta.get("tool_calls")
                    )
    return seen, error


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(CHUNK, st.sampled_from([b"", b"", b"\r", b"\n", b"\r\n"])),
        min_size=1,
        max_size=6,
    ),
    drop_usage=st.booleans(),
)
def test_any_chunk_read_as_one_whole_event_is_seen_as_the_spec_reads_it(
    chunks: list[tuple[dict[str, Any], bytes]], drop_usage: bool
) -> None:
    # Most reads are one whole ``data: {...}`` event: the tap takes a shortcut for them,
    # which must see whatever chunk comes exactly as the general path does. A line end
    # inside the JSON (whitespace to a parser) is a new line to SSE.
    pieces = [event(c).replace(b"{", b"{" + end, 1) for c, end in chunks] + [DONE]
    tap = StreamTap(drop_usage_chunk=drop_usage)
    forwarded = b"".join(tap.feed(p) for p in pieces)
    seen = Seen(tap.answer, tap.prompt_tokens, tap.completion_tokens, tap.done, forwarded)
    assert seen == reference(b"".join(pieces), drop_usage=drop_usage)
    assert (tap.content_seen, tap.error) == noticed(b"".join(pieces))


# -- single behaviours -------------------------------------------------------------------
def run(tap: StreamTap, pieces: list[bytes]) -> bytes:
    return b"".join(tap.feed(p) for p in pieces)


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


def test_a_crlf_split_between_two_reads_keeps_events_apart() -> None:
    # The reported failure: each read ends between the CR and the LF of an event's end.
    stream = crlf(STREAM)
    pieces = [p + b"\r\n\r" for p in stream.split(b"\r\n\r\n")[:-1]]
    pieces = [pieces[0], *(b"\n" + p for p in pieces[1:]), b"\n"]
    assert b"".join(pieces) == stream
    tap = StreamTap(drop_usage_chunk=True)
    assert run(tap, pieces) == STREAM.replace(USAGE, b"")
    assert tap.answer == "Namaste, Ravi"
    assert (tap.prompt_tokens, tap.completion_tokens, tap.done) == (11, 3, True)


def test_usage_on_a_chunk_with_choices_is_removed_when_not_asked_for() -> None:
    both = {"choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": {"prompt_tokens": 2}}
    tap = StreamTap(drop_usage_chunk=True)
    assert tap.feed(event(both)) == event({"choices": both["choices"]})
    assert (tap.answer, tap.prompt_tokens) == ("hi", 2)
    kept = StreamTap(drop_usage_chunk=False)
    assert kept.feed(event(both)) == event(both)


def test_spec_corners() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    out = run(
        tap,
        [
            b"\xef\xbb\xbfdata:" + orjson.dumps({"choices": [{"delta": {"content": "a"}}]}),
            b"\n\n\n\n: comment only\n\n",
            b"data\ndata: " + b'{"choices": [{"delta": {"content": "b"}}]}\n\n',
            b"database: ignored\nretry: 10\n\n",
            b"data: [DONE]\n\n",
        ],
    )
    assert tap.answer == "ab"  # "data" alone adds an empty line: "\n{...}" is still JSON
    assert tap.done
    assert out.startswith(b"\xef\xbb\xbfdata:")
    assert b"\n\n\n" not in out  # runs of blank lines dispatch nothing and are not forwarded
    assert b": comment only\n\n" in out


def test_a_cut_event_is_neither_counted_nor_forwarded() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    assert run(tap, [delta("kept"), delta("lost")[:-2]]) == delta("kept")
    assert tap.answer == "kept"
    assert not tap.done


def test_choices_out_of_order_keep_choice_zero() -> None:
    tap = StreamTap(drop_usage_chunk=False)
    two = {"choices": [{"index": 1, "delta": {"content": "B"}}, {"delta": {"content": "a"}}]}
    run(tap, [delta("X", index=1), event(two), delta("b"), delta("Y", index=1)])
    assert tap.answer == "ab"


@pytest.mark.parametrize("count", ["11", 11.0, 11.5, True, -1, MAX_TOKENS + 1, None, [11], 10**30])
def test_token_counts_that_are_not_storable_integers_are_ignored(count: Any) -> None:
    usage = {"prompt_tokens": count, "completion_tokens": count}
    tap = StreamTap(drop_usage_chunk=True)
    # The standard library writes integers of any size; orjson reads big ones as floats.
    tap.feed(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
    assert (tap.prompt_tokens, tap.completion_tokens) == (None, None)
    body = json.dumps({"choices": [{"message": {"content": "4"}}], "usage": usage}).encode()
    assert parse_completion(body) == ("4", None, None)


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
