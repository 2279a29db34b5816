"""Request parsing and rewriting: pure functions, every path, plus a fuzzer."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tara.gateway.chat_request import ChatRequest, parse_chat_request, tara_headers
from tara.gateway.errors import GatewayError
from tara.gateway.identity import StudentHasher

MSGS = [{"role": "user", "content": "2+2?"}]


def parse(body: Any, headers: dict[str, str] | None = None) -> ChatRequest | GatewayError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return parse_chat_request(raw, hdrs)


def ok(body: Any, headers: dict[str, str] | None = None) -> ChatRequest:
    result = parse(body, headers)
    assert isinstance(result, ChatRequest), result
    return result


def err(body: Any, headers: dict[str, str] | None = None) -> GatewayError:
    result = parse(body, headers)
    assert isinstance(result, GatewayError)
    assert result.status == 400
    return result


def test_minimal_request() -> None:
    r = ok({"model": "tara-tutor", "messages": MSGS})
    assert (r.track, r.student_id, r.subject, r.language, r.grade) == (
        "tara-tutor",
        None,
        None,
        None,
        None,
    )
    assert not r.stream
    assert not r.client_wants_usage
    assert not r.user_retry
    assert r.messages == MSGS


def test_context_from_metadata_is_taken_out_of_the_body() -> None:
    r = ok(
        {
            "model": "t",
            "messages": MSGS,
            "user": "s-1",
            "metadata": {"subject": "Math", "language": "HI", "grade": 7, "app": "x"},
        }
    )
    assert (r.student_id, r.subject, r.language, r.grade) == ("s-1", "math", "hi", "7")
    assert r.body["metadata"] == {"app": "x"}


def test_empty_metadata_is_dropped() -> None:
    r = ok({"model": "t", "messages": MSGS, "metadata": {"subject": "math"}})
    assert "metadata" not in r.body
    assert r.subject == "math"


def test_headers_win_over_body() -> None:
    r = ok(
        {"model": "t", "messages": MSGS, "user": "body-user", "metadata": {"subject": "physics"}},
        {
            "X-Tara-User": " head-user ",
            "X-Tara-Subject": "Chemistry",
            "X-Tara-Language": "ta",
            "X-Tara-Grade": "9",
            "X-Tara-Retry": "1",
        },
    )
    assert (r.student_id, r.subject, r.language, r.grade) == ("head-user", "chemistry", "ta", "9")
    assert r.user_retry


@pytest.mark.parametrize(
    ("metadata", "headers", "topic", "left"),
    [
        ({"topic": "Quadratic Equations", "app": "x"}, {}, "quadratic equations", {"app": "x"}),
        ({"topic": "algebra"}, {"X-Tara-Topic": "Fractions"}, "fractions", None),  # header wins
        (None, {"X-Tara-Topic": " optics "}, "optics", None),
        ({"topic": "  "}, {}, None, None),
        (None, {}, None, None),
    ],
)
def test_topic_from_metadata_or_header_is_taken_out_of_the_body(
    metadata: dict[str, Any] | None, headers: dict[str, str], topic: str | None, left: Any
) -> None:
    body: dict[str, Any] = {"model": "t", "messages": MSGS}
    if metadata is not None:
        body["metadata"] = metadata
    r = ok(body, headers)
    assert (r.topic, r.body.get("metadata")) == (topic, left)


def test_blank_headers_are_ignored() -> None:
    assert tara_headers([(b"x-tara-user", b"  "), (b"x-other", b"v")]) == {}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MSGS}, "model"),
        ({"model": "", "messages": MSGS}, "model"),
        ({"model": 3, "messages": MSGS}, "model"),
        ({"model": "t"}, "messages"),
        ({"model": "t", "messages": []}, "messages"),
        ({"model": "t", "messages": "hi"}, "messages"),
        ({"model": "t", "messages": ["hi"]}, "messages[0]"),
        ({"model": "t", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "t", "messages": MSGS, "stream": "yes"}, "stream"),
        ({"model": "t", "messages": MSGS, "stream_options": []}, "stream_options"),
        ({"model": "t", "messages": MSGS, "user": 5}, "user"),
        ({"model": "t", "messages": MSGS, "metadata": []}, "metadata"),
        ({"model": "t", "messages": MSGS, "metadata": {"subject": {}}}, "metadata.subject"),
        ({"model": "t", "messages": MSGS, "metadata": {"grade": True}}, "metadata.grade"),
        ({"model": "t", "messages": MSGS, "metadata": {"topic": ["a"]}}, "metadata.topic"),
    ],
)
def test_invalid_fields_are_named(body: dict[str, Any], param: str) -> None:
    e = err(body)
    assert e.param == param
    assert param.split("[")[0].split(".")[0] in e.message


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b"null", b'"s"', b"\xff\xfe"])
def test_not_an_object(raw: bytes) -> None:
    e = err(raw)
    assert e.param is None
    assert "JSON" in e.message or "empty" in e.message


def test_upstream_body_rewrites_model_user_and_usage() -> None:
    r = ok(
        {
            "model": "tara-tutor",
            "messages": MSGS,
            "user": "s-1",
            "stream": True,
            "temperature": 0.3,
            "stream_options": {"other": 1},
            "metadata": {"subject": "math"},
        }
    )
    hasher = StudentHasher("k")
    sent = orjson.loads(r.upstream_body("ft:model-1", hasher("s-1")))
    assert sent == {
        "model": "ft:model-1",
        "messages": MSGS,
        "user": hasher("s-1"),
        "stream": True,
        "temperature": 0.3,
        "stream_options": {"other": 1, "include_usage": True},
    }
    assert not r.client_wants_usage


def test_upstream_body_drops_blank_user_and_keeps_non_stream_untouched() -> None:
    r = ok({"model": "t", "messages": MSGS, "user": "  "})
    assert r.student_id is None
    assert orjson.loads(r.upstream_body("m", None)) == {"model": "m", "messages": MSGS}


def test_client_usage_request_is_remembered() -> None:
    r = ok(
        {"model": "t", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert r.client_wants_usage


def test_student_hash_is_keyed_hmac() -> None:
    a, b = StudentHasher("key-a"), StudentHasher("key-b")
    assert a("s-1") == a("s-1") != a("s-2")
    assert a("s-1") != b("s-1")
    assert len(a("s-1")) == 64
    assert a("\udcff") == a("\udcff")


@pytest.mark.parametrize("key", ["", "k", "k" * 63, "k" * 64, "k" * 65, "क" * 30, "x" * 200])
@pytest.mark.parametrize("student", ["s-1", "", "छात्र-7", "\udcff", "s" * 128])
def test_student_hash_is_hmac_sha256_of_the_id(key: str, student: str) -> None:
    """The digest stays the one stored rows and other replicas computed (RFC 2104)."""
    expected = hmac.new(
        key.encode(), student.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()
    assert StudentHasher(key)(student) == expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values | st.just("tara-tutor"),
        "messages": json_values
        | st.lists(st.fixed_dictionaries({"role": st.text()}, optional={"content": json_values})),
        "stream": json_values,
        "stream_options": json_values,
        "user": json_values,
        "metadata": json_values
        | st.dictionaries(st.sampled_from(["subject", "language", "grade", "x"]), json_values),
    },
)
header_values = st.binary(max_size=20)


@given(
    body=bodies | json_values,
    headers=st.dictionaries(
        st.sampled_from([b"x-tara-user", b"x-tara-subject", b"x-tara-retry", b"x-tara-grade"]),
        header_values,
    ),
)
def test_fuzz_parser_returns_request_or_400(body: Any, headers: dict[bytes, bytes]) -> None:
    result = parse_chat_request(orjson.dumps(body), list(headers.items()))
    if isinstance(result, GatewayError):
        assert result.status == 400
        assert orjson.loads(result.body())["error"]["message"]
    else:
        out = orjson.loads(result.upstream_body("m", None))
        assert out["model"] == "m"
        assert "user" not in out
        assert not set(out.get("metadata") or {}) & {"subject", "language", "grade"}


@given(raw=st.binary(max_size=200))
def test_fuzz_parser_arbitrary_bytes(raw: bytes) -> None:
    result = parse_chat_request(raw, [])
    assert isinstance(result, ChatRequest | GatewayError)
