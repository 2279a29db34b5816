"""Client-supplied values at the edge: refused with a 400 naming the field, never let through.

A value the gateway stores or keys on (student id, subject, language, grade)
that is not valid UTF-8, too long or made of characters outside its set is
refused before routing, so it can neither poison a batch of other students'
records nor grow Redis and the gateway's memory; nested JSON past the depth
limit is a 400, not a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from gateway_harness import AUTH, MESSAGES, UPSTREAM_KEY, ListSink, gateway_settings, in_process
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tara.gateway import limits
from tara.gateway.app import Gateway
from tara.gateway.chat_request import ChatRequest, parse_chat_request
from tara.gateway.errors import GatewayError
from tara.gateway.server import gateway_from_settings
from tara.sandbox import running_sandbox
from tara.sandbox.config import default_config, zero_latency
from tara.settings import Settings
from tara.telemetry.pipeline import Telemetry

TRACK = "tara-tutor"
GOOD_CONTEXT = {"x-tara-subject": b"math", "x-tara-language": b"hi", "x-tara-grade": b"7"}


def parse(headers: dict[str, bytes], **body: Any) -> ChatRequest | GatewayError:
    raw = orjson.dumps({"model": TRACK, "messages": MESSAGES, **body})
    return parse_chat_request(raw, [(k.encode(), v) for k, v in headers.items()])


def refused(headers: dict[str, bytes], **body: Any) -> GatewayError:
    result = parse(headers, **body)
    assert isinstance(result, GatewayError), result
    assert result.status == 400
    assert orjson.loads(result.body())["error"]["type"] == "invalid_request_error"
    return result


# -- pure: every header and body field, at and past its limit ------------------------------
FIELDS = [
    ("x-tara-user", "X-Tara-User", "user", limits.STUDENT_ID),
    ("x-tara-subject", "X-Tara-Subject", "metadata.subject", limits.SUBJECT),
    ("x-tara-language", "X-Tara-Language", "metadata.language", limits.LANGUAGE),
    ("x-tara-grade", "X-Tara-Grade", "metadata.grade", limits.GRADE),
    ("x-tara-topic", "X-Tara-Topic", "metadata.topic", limits.TOPIC),
]


def body_field(path: str, value: str) -> dict[str, Any]:
    if path == "user":
        return {"user": value}
    return {"metadata": {path.removeprefix("metadata."): value}}


@pytest.mark.parametrize(("header", "name", "path", "limit"), FIELDS)
def test_a_value_at_its_limit_is_accepted(
    header: str, name: str, path: str, limit: limits.TextLimit
) -> None:
    del name
    longest = "a" * limit.max_chars
    for result in (parse({header: longest.encode()}), parse({}, **body_field(path, longest))):
        assert isinstance(result, ChatRequest), result


@pytest.mark.parametrize(("header", "name", "path", "limit"), FIELDS)
def test_a_value_past_its_limit_is_refused_naming_field_and_limit(
    header: str, name: str, path: str, limit: limits.TextLimit
) -> None:
    too_long = "a" * (limit.max_chars + 1)
    for error, param in (
        (refused({header: too_long.encode()}), name),
        (refused({}, **body_field(path, too_long)), path),
    ):
        assert error.param == param
        assert param in error.message
        assert str(limit.max_chars) in error.message
        assert error.code == "invalid_value"


@pytest.mark.parametrize(("header", "name", "path", "limit"), FIELDS)
@pytest.mark.parametrize(
    "raw", [b"ma\xffth", b"\xed\xa0\x80", b"a\x00b", b"a\x1bb", b"\xc3"], ids=repr
)
def test_bytes_that_are_not_clean_text_are_refused(
    header: str, name: str, path: str, limit: limits.TextLimit, raw: bytes
) -> None:
    del path, limit
    error = refused({header: raw})
    assert error.param == name
    assert name in error.message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.subject", "ma\nth"),
        ("metadata.subject", "गणित"),
        ("metadata.language", "en IN"),
        ("metadata.grade", "7;DROP"),
        ("user", "s\x00-1"),
        ("user", "s\u200b1"),
    ],
)
def test_body_values_outside_their_character_set_are_refused(path: str, value: str) -> None:
    error = refused({}, **body_field(path, value))
    assert error.param == path


def test_what_stays_allowed() -> None:
    result = parse(
        {
            "x-tara-user": "रवि कुमार 42".encode(),
            "x-tara-subject": b"Social Studies",
            "x-tara-language": b"en-IN",
            "x-tara-grade": b"Class 10.B",
        }
    )
    assert isinstance(result, ChatRequest)
    assert (result.student_id, result.subject, result.language, result.grade) == (
        "रवि कुमार 42",
        "social studies",
        "en-in",
        "Class 10.B",
    )


printable = st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S", "Zs"])


@given(
    values=st.dictionaries(
        st.sampled_from(["x-tara-user", "x-tara-subject", "x-tara-language", "x-tara-grade"]),
        st.binary(max_size=300) | st.text(printable, max_size=200).map(str.encode),
    )
)
def test_any_header_bytes_are_refused_by_name_or_storable(values: dict[str, bytes]) -> None:
    result = parse(values)
    if isinstance(result, GatewayError):
        assert result.status == 400
        assert result.param is not None
        assert result.param.lower() in values
        return
    for value in (result.student_id, result.subject, result.language, result.grade):
        if value is not None:
            value.encode("utf-8")  # strict: no surrogates reach a store
            assert value.isprintable()
            assert len(value) <= limits.STUDENT_ID.max_chars


# -- nesting depth ---------------------------------------------------------------------
def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def deep_body(depth: int) -> bytes:
    """A chat body whose metadata holds ``depth`` nested arrays (orjson cannot write 255+)."""
    inner = b"[" * depth + b'"x"' + b"]" * depth
    head = b'{"model": "tara-tutor", "messages": [{"role": "user", "content": "hi"}], "metadata": '
    return head + b'{"app": ' + inner + b"}}"


def test_depth_within_the_limit_is_accepted_and_renders() -> None:
    # The body object and metadata are two levels; the rest fills the limit exactly.
    result = parse({}, metadata={"app": nested(limits.MAX_JSON_DEPTH - 2)})
    assert isinstance(result, ChatRequest), result
    assert orjson.loads(result.upstream_body("m", None))["metadata"]["app"]


@pytest.mark.parametrize("depth", [limits.MAX_JSON_DEPTH - 1, 300, 1000])
def test_deeper_nesting_is_a_400_naming_the_limit(depth: int) -> None:
    error = parse_chat_request(deep_body(depth), [])
    assert isinstance(error, GatewayError)
    assert error.status == 400
    assert error.code == "json_too_deep"
    assert str(limits.MAX_JSON_DEPTH) in error.message


async def test_deep_json_is_a_400_over_http_with_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ListSink()
    caplog.set_level(logging.DEBUG)
    async with in_process(gateway_settings(), sinks=[sink]) as (gateway, client):
        response = await client.post("/v1/chat/completions", content=deep_body(300), headers=AUTH)
        rejected = gateway.metrics.registry.get_sample_value(
            "tara_rejected_requests_total", {"status": "400", "route": "chat"}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "json_too_deep"
    assert str(limits.MAX_JSON_DEPTH) in error["message"]
    assert sink.records == []
    assert rejected == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# -- end to end: a poison header among other students' requests ------------------------
@contextlib.asynccontextmanager
async def production(settings: Settings) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gateway = gateway_from_settings(settings, registry=CollectorRegistry())
    async with gateway.lifespan():
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client


@contextlib.asynccontextmanager
async def sandbox() -> AsyncIterator[str]:
    config = zero_latency(default_config()).model_copy(update={"api_keys": [UPSTREAM_KEY]})
    async with running_sandbox(config, seed=5) as url:
        yield url


def shared(upstream: str, tmp_path: Path, namespace: str) -> Settings:
    return gateway_settings(
        upstream,
        redis_url="redis://127.0.0.1:6379/0",
        redis_namespace=namespace,
        database_url=f"sqlite:///{tmp_path / 'log.db'}",
        telemetry={"flush_interval": 60, "batch_size": 10_000},
        stats={"flush_interval": 60},
    )


def telemetry_of(gateway: Gateway) -> Telemetry:
    return next(s for s in gateway.services if isinstance(s, Telemetry))


async def chat(client: httpx.AsyncClient, student: str, **context: bytes) -> httpx.Response:
    """A chat request with raw header bytes (not every value is text)."""
    body = orjson.dumps({"model": TRACK, "messages": MESSAGES})
    headers = [
        (b"authorization", AUTH["Authorization"].encode()),
        (b"x-tara-user", student.encode()),
    ]
    headers += [(k.encode(), v) for k, v in {**GOOD_CONTEXT, **context}.items()]
    return await client.post("/v1/chat/completions", content=body, headers=headers)


@pytest.mark.redis
@pytest.mark.integration
async def test_a_poison_header_cannot_lose_other_students_records(
    tmp_path: Path, namespace: str, redis_client: aioredis.Redis
) -> None:
    del redis_client  # cleans the namespace afterwards
    async with sandbox() as upstream, production(shared(upstream, tmp_path, namespace)) as pair:
        gateway, client = pair
        # Long flush intervals: all of them land in one batch, written by the flush below.
        good = [chat(client, f"student-{i}") for i in range(10)]
        poison = chat(client, "student-poison", **{"x-tara-subject": b"ma\xffth"})
        *answers, bad = await asyncio.gather(*good, poison)
        telemetry = telemetry_of(gateway)
        await telemetry.flush()
        ids = [a.headers["x-tara-request-id"] for a in answers]
        ratings = [
            await client.post("/v1/feedback", json={"request_id": i, "rating": 5}, headers=AUTH)
            for i in ids
        ]
        await telemetry.flush()
        rows = [await telemetry.log.get(i) for i in ids]
    assert [a.status_code for a in answers] == [200] * 10
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "X-Tara-Subject"
    assert [r.status_code for r in ratings] == [200] * 10
    assert [row.rating if row else None for row in rows] == [5] * 10


@pytest.mark.redis
@pytest.mark.integration
async def test_huge_context_headers_are_refused_and_nothing_is_stored(
    tmp_path: Path, namespace: str, redis_client: aioredis.Redis
) -> None:
    huge = b"x" * 64 * 1024
    async with sandbox() as upstream, production(shared(upstream, tmp_path, namespace)) as pair:
        gateway, client = pair
        before = {k async for k in redis_client.scan_iter(match=f"{namespace}:*")}
        statuses = []
        for i in range(300):
            header = "x-tara-subject" if i % 2 else "x-tara-grade"
            response = await chat(client, f"student-{i}", **{header: huge})
            statuses.append(response.status_code)
        telemetry = telemetry_of(gateway)
        await telemetry.flush()
        after = {k async for k in redis_client.scan_iter(match=f"{namespace}:*")}
        stored = [ix async for ix in telemetry.log.iter_interactions()]
        rejected = gateway.metrics.registry.get_sample_value(
            "tara_rejected_requests_total", {"status": "400", "route": "chat"}
        )
        now = time.time()
        stats = await telemetry.store.read(TRACK, "all", "stable", now - 60, now + 60)
    assert statuses == [400] * 300
    assert after == before
    assert stored == []
    assert stats.requests == 0
    assert rejected == 300


# -- the documented table -----------------------------------------------------------------
def test_docs_state_the_limits_the_code_enforces() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
    rows = {
        cells[1].strip(): cells
        for line in docs.read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and len(cells := line.split("|")) > 5
    }
    for name, limit in [
        ("student id", limits.STUDENT_ID),
        ("subject", limits.SUBJECT),
        ("language", limits.LANGUAGE),
        ("grade", limits.GRADE),
        ("topic", limits.TOPIC),
        ("request id", limits.REQUEST_ID),
        ("comment", limits.COMMENT),
    ]:
        assert rows[name][3].strip() == f"{limit.max_chars} characters", name
    assert rows["tags"][3].strip() == f"{limits.MAX_TAGS} tags"
    assert rows["nesting"][3].strip() == f"{limits.MAX_JSON_DEPTH} levels"
