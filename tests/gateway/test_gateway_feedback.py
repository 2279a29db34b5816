"""``POST /v1/feedback`` and the telemetry behind the production gateway, on real stores.

Gateways are built by :func:`gateway_from_settings` (the composition ``tara
serve`` runs) against a real sandbox upstream, the real Redis and the real
PostgreSQL or a SQLite file, each on a fresh Prometheus registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from gateway_harness import AUTH, UPSTREAM_KEY, canary_table, gateway_settings
from prometheus_client import CollectorRegistry

from tara.gateway.app import Gateway
from tara.gateway.errors import GatewayError
from tara.gateway.feedback import MAX_COMMENT_CHARS, FeedbackRequest, parse_feedback
from tara.gateway.identity import StudentHasher
from tara.gateway.server import gateway_from_settings
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.sandbox import running_sandbox
from tara.sandbox.config import default_config, zero_latency
from tara.settings import DEV_STUDENT_HASH_KEY, Settings
from tara.telemetry.interactions import Interaction
from tara.telemetry.log_backends import open_log
from tara.telemetry.pipeline import Telemetry
from tcp_relay import TcpRelay
from waiting import eventually

pytestmark = pytest.mark.integration

TRACK = "tara-tutor"
CANARY = "tara-candidate-good"
CONTEXT = {"X-Tara-Subject": "math", "X-Tara-Language": "hi", "X-Tara-Grade": "7"}


# -- pure validation ---------------------------------------------------------------
def body(**fields: Any) -> bytes:
    return orjson.dumps({"request_id": "r-1", "rating": 4, **fields})


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"request_id": "r-1", "rating": 4', None),
        (b"[1, 2]", None),
        (orjson.dumps({"rating": 4}), "request_id"),
        (body(request_id=""), "request_id"),
        (body(request_id=7), "request_id"),
        (body(request_id="x" * 200), "request_id"),
        (body(rating=0), "rating"),
        (body(rating=6), "rating"),
        (body(rating="5"), "rating"),
        (body(rating=True), "rating"),
        (body(rating=4.0), "rating"),
        (body(rating=None), "rating"),
        (body(tags="wrong"), "tags"),
        (body(tags=["wrong", 3]), "tags"),
        (body(tags=["wrong", "boring"]), "tags"),
        (body(relevance=1.5), "relevance"),
        (body(relevance=-0.1), "relevance"),
        (body(relevance=True), "relevance"),
        (body(relevance="high"), "relevance"),
        (body(comment=5), "comment"),
        (body(comment="x" * (MAX_COMMENT_CHARS + 1)), "comment"),
        (body(comment="a\x00b"), "comment"),
        (body(comment="bell\x07"), "comment"),
        (body(request_id="r 1"), "request_id"),
        (body(request_id="r-\u00fc"), "request_id"),
        (body(request_id="r-1\n"), "request_id"),
        (body(tags=["wrong"] * 17), "tags"),
        (b"[" * 300 + b"]" * 300, None),
        (b'{"request_id": "r-1", "rating": 4, "x": ' + b"[" * 300 + b"]" * 300 + b"}", None),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(raw: bytes, param: str | None) -> None:
    error = parse_feedback(raw)
    assert isinstance(error, GatewayError)
    assert error.status == (400 if param is None else 422)
    assert error.param == param
    if param is not None:
        assert param in error.message


def test_bad_feedback_messages_name_the_rule() -> None:
    errors = [
        parse_feedback(body(rating=9)),
        parse_feedback(body(request_id="r 1")),
        parse_feedback(body(comment="a\x00b")),
        parse_feedback(orjson.dumps({"rating": 4})),
        parse_feedback(b"[" * 300 + b"]" * 300),
    ]
    messages = [e.message for e in errors if isinstance(e, GatewayError)]
    assert len(messages) == 5
    assert "1" in messages[0]
    assert "5" in messages[0]
    assert "128 characters" in messages[1]
    assert "2000 characters" in messages[2]
    assert "required" in messages[3]
    assert "64 levels" in messages[4]


def test_edge_values_are_accepted() -> None:
    comment = "पहली पंक्ति\nsecond line\twith a tab"
    parsed = parse_feedback(body(request_id="a" * 128, comment=comment, relevance=0))
    assert parsed == FeedbackRequest("a" * 128, 4, (), 0.0, comment)


def test_good_feedback_is_parsed() -> None:
    tags = ["cultural", "irrelevant", "wrong", "language", "too_long", "wrong"]
    parsed = parse_feedback(body(rating=1, tags=tags, relevance=1, comment="", extra=True))
    assert parsed == FeedbackRequest(
        "r-1", 1, ("cultural", "irrelevant", "wrong", "language", "too_long"), 1.0, None
    )
    assert parse_feedback(body(tags=None)) == FeedbackRequest("r-1", 4)


# -- helpers ---------------------------------------------------------------------------
def telemetry_of(gateway: Gateway) -> Telemetry:
    return next(s for s in gateway.services if isinstance(s, Telemetry))


def sample(gateway: Gateway, name: str, **labels: str) -> float:
    return gateway.metrics.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def sandbox() -> AsyncIterator[str]:
    config = zero_latency(default_config()).model_copy(update={"api_keys": [UPSTREAM_KEY]})
    async with running_sandbox(config, seed=11) as url:
        yield url


@contextlib.asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """A started production gateway and an in-process client."""
    gateway = gateway_from_settings(settings, registry=CollectorRegistry())
    async with gateway.lifespan():
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client


def settings_with(upstream: str, database_url: str, **overrides: Any) -> Settings:
    telemetry = {"flush_interval": 0.05, **overrides.pop("telemetry", {})}
    stats = {"flush_interval": 0.05, **overrides.pop("stats", {})}
    return gateway_settings(
        upstream, database_url=database_url, telemetry=telemetry, stats=stats, **overrides
    )


def shared_settings(upstream: str, dsn: str, schema: str, namespace: str) -> Settings:
    """Replicas sharing the real Redis (``namespace``) and PostgreSQL (``schema``)."""
    return settings_with(
        upstream,
        dsn,
        redis_url="redis://127.0.0.1:6379/0",
        redis_namespace=namespace,
        telemetry={"pg_schema": schema},
    )


async def ask(
    client: httpx.AsyncClient,
    student: str | None = "student-42",
    *,
    question: str = "What is 7 x 8?",
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    request = {"model": TRACK, "messages": [{"role": "user", "content": question}]}
    if stream:
        request["stream"] = True
    hdrs = {**AUTH, **CONTEXT, **(headers or {})}
    if student is not None:
        hdrs["X-Tara-User"] = student
    response = await client.post("/v1/chat/completions", json=request, headers=hdrs)
    assert response.status_code == 200, response.text
    return response


async def rate(client: httpx.AsyncClient, request_id: str, **fields: Any) -> httpx.Response:
    payload = {"request_id": request_id, "rating": 4, **fields}
    return await client.post("/v1/feedback", json=payload, headers=AUTH)


def streamed_text(response: httpx.Response) -> str:
    """The answer a client reassembles from the SSE stream."""
    parts = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in orjson.loads(line[6:])["choices"]:
                parts.append(choice["delta"].get("content") or "")
    return "".join(parts)


async def save_canary(client: aioredis.Redis, namespace: str) -> None:
    store = RedisRoutingStore(client, namespace)
    assert await store.save_table(canary_table(CANARY, 10_000), 0)


# -- end to end ------------------------------------------------------------------------
@pytest.mark.redis
@pytest.mark.postgres
async def test_rating_joins_the_answer_and_replaces_itself_everywhere(
    redis_client: aioredis.Redis, namespace: str, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    await save_canary(redis_client, namespace)
    async with sandbox() as upstream:
        settings = shared_settings(upstream, dsn, schema, namespace)
        async with replica(settings) as (gateway, client):
            answer = await ask(client, stream=True)
            rid = answer.headers["x-tara-request-id"]
            assert answer.headers["x-tara-variant"] == "canary"
            first = await rate(client, rid, rating=2, tags=["wrong", "cultural"], relevance=0.4)
            assert first.json() == {"request_id": rid, "rating": 2, "replaced": False}
            second = await rate(client, rid, rating=5, tags=["cultural"], comment="ok now")
            assert second.json() == {"request_id": rid, "rating": 5, "replaced": True}
            tel = telemetry_of(gateway)
            await tel.flush()
            now = time.time()
            stats = await tel.store.read(TRACK, "all", "canary", now - 60, now + 60)
            stable = await tel.store.read(TRACK, "all", "stable", now - 60, now + 60)
            row = await tel.log.get(rid)
            labels = {"track": TRACK, "variant": "canary", "subject": "math", "language": "hi"}
            ratings_seen = sample(gateway, "tara_feedback_rating_count", **labels)
            cultural = sample(
                gateway, "tara_feedback_tags_total", track=TRACK, variant="canary", tag="cultural"
            )
    assert (stats.requests, stats.ratings, stats.tags) == (1, [0, 0, 0, 0, 1], {"cultural": 1})
    assert (stats.relevance_count, stable.requests, stable.rating_count) == (0, 0, 0)
    assert row is not None
    assert (row.rating, row.tags, row.relevance, row.comment) == (5, ["cultural"], None, "ok now")
    assert (row.variant, row.model, row.subject, row.language, row.grade) == (
        "canary",
        CANARY,
        "math",
        "hi",
        "7",
    )
    assert row.student_hash == StudentHasher(DEV_STUDENT_HASH_KEY)("student-42")
    assert row.student_hash != "student-42"
    assert row.stream
    assert row.answer
    assert row.answer == streamed_text(answer)
    assert (ratings_seen, cultural) == (1, 1)


@pytest.mark.redis
@pytest.mark.postgres
async def test_rating_sent_to_another_replica_lands_on_the_right_variant(
    redis_client: aioredis.Redis, namespace: str, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    await save_canary(redis_client, namespace)
    async with sandbox() as upstream:
        settings = shared_settings(upstream, dsn, schema, namespace)
        async with replica(settings) as (gw_a, a), replica(settings) as (gw_b, b):
            served = await ask(a)
            stable_served = await ask(a, student=None)  # no student id: stable
            rid = served.headers["x-tara-request-id"]
            # B has never seen either request: it finds them through Redis.
            assert (await rate(b, rid, rating=1, tags=["language"])).status_code == 200
            other = stable_served.headers["x-tara-request-id"]
            assert (await rate(b, other, rating=4)).status_code == 200
            for gw in (gw_a, gw_b):
                await telemetry_of(gw).flush()
            now = time.time()
            read = telemetry_of(gw_a).store.read_many
            series = [(TRACK, "all", "canary"), (TRACK, "all", "stable")]
            stats = await read(series, now - 60, now + 60)  # type: ignore[arg-type]
            row = await telemetry_of(gw_a).log.get(rid)
            b_metric = sample(
                gw_b, "tara_feedback_tags_total", track=TRACK, variant="canary", tag="language"
            )
    canary, stable = stats[series[0]], stats[series[1]]  # type: ignore[index]
    assert (canary.requests, canary.ratings, canary.tags) == (1, [1, 0, 0, 0, 0], {"language": 1})
    assert (stable.requests, stable.ratings) == (1, [0, 0, 0, 1, 0])
    assert row is not None
    assert (row.rating, row.variant) == (1, "canary")
    assert b_metric == 1


async def test_feedback_errors_over_http(tmp_path: Path) -> None:
    async with sandbox() as upstream:
        settings = settings_with(upstream, f"sqlite:///{tmp_path / 'log.db'}")
        async with replica(settings) as (gateway, client):
            unknown = await rate(client, "no-such-request")
            bad = await rate(client, "no-such-request", rating=9)
            not_json = await client.post("/v1/feedback", content=b"{", headers=AUTH)
            no_key = await client.post("/v1/feedback", json={"request_id": "x", "rating": 3})
            wrong_method = await client.get("/v1/feedback", headers=AUTH)
            huge = await client.post("/v1/feedback", content=b" " * 20_000, headers=AUTH)
            refused = sample(
                gateway, "tara_rejected_requests_total", status="422", route="feedback"
            )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "request_id"
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "rating"
    assert "rating" in bad.json()["error"]["message"]
    assert not_json.status_code == 400
    assert no_key.status_code == 401
    assert wrong_method.status_code == 405
    assert huge.status_code == 413
    assert refused == 1


@pytest.mark.redis
async def test_feedback_is_503_while_redis_is_down(
    tmp_path: Path, namespace: str, redis_client: aioredis.Redis, redis_proxy: Any
) -> None:
    del redis_client  # cleans the namespace afterwards
    async with sandbox() as upstream:
        settings = settings_with(
            upstream,
            f"sqlite:///{tmp_path / 'log.db'}",
            redis_url=redis_proxy.url,
            redis_namespace=namespace,
        )
        async with replica(settings) as (gateway, client):
            rid = (await ask(client)).headers["x-tara-request-id"]
            await telemetry_of(gateway).flush()
            await redis_proxy.stop()
            down = await rate(client, rid)
            await redis_proxy.start()
            back = await rate(client, rid)
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "store_unavailable"
    assert back.status_code == 200


async def test_user_retries_by_header_and_by_repeating(tmp_path: Path) -> None:
    async with sandbox() as upstream:
        settings = settings_with(upstream, f"sqlite:///{tmp_path / 'log.db'}")
        async with replica(settings) as (gateway, client):
            button = await ask(client, "s-a", headers={"X-Tara-Retry": "1"})
            await telemetry_of(gateway).flush()
            first = await ask(client, "s-b", question="Why is the sky blue?")
            again = await ask(client, "s-b", question="why is the  SKY blue")
            tel = telemetry_of(gateway)
            await tel.flush()
            labels = {"track": TRACK, "variant": "stable", "subject": "math", "language": "hi"}
            counted = sample(gateway, "tara_user_retries_total", **labels)
            rows = [
                await tel.log.get(r.headers["x-tara-request-id"]) for r in (button, first, again)
            ]
            now = time.time()
            stats = await tel.store.read(TRACK, "all", "stable", now - 60, now + 60)
    assert [r.user_retry for r in rows if r] == [True, False, True]
    assert counted == 2
    assert stats.user_retries == 2


@pytest.mark.parametrize("capture", ["full", "metadata", "off"])
async def test_capture_modes(tmp_path: Path, capture: str) -> None:
    async with sandbox() as upstream:
        settings = settings_with(
            upstream, f"sqlite:///{tmp_path / 'log.db'}", telemetry={"capture": capture}
        )
        async with replica(settings) as (gateway, client):
            rid = (await ask(client)).headers["x-tara-request-id"]
            assert (await rate(client, rid, rating=3, comment="meh")).status_code == 200
            tel = telemetry_of(gateway)
            await tel.flush()
            row = await tel.log.get(rid)
            now = time.time()
            stats = await tel.store.read(TRACK, "all", "stable", now - 60, now + 60)
    assert stats.rating_count == 1  # window stats do not depend on capture
    if capture == "off":
        assert row is None
        return
    assert row is not None
    assert row.rating == 3
    if capture == "full":
        assert row.messages == [{"role": "user", "content": "What is 7 x 8?"}]
        assert (row.answer is not None, row.comment) == (True, "meh")
    else:
        assert (row.messages, row.answer, row.comment) == (None, None, None)
        assert (row.latency_s is not None, row.student_hash is not None) == (True, True)


@pytest.mark.postgres
async def test_a_killed_log_store_loses_no_request_and_no_record(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    dsn, schema = pg_schema
    relay = TcpRelay(5432)
    await relay.start()
    relayed = dsn.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    telemetry = {
        "pg_schema": schema,
        "retry_initial_backoff": 0.01,
        "retry_max_backoff": 0.02,
        "spool_path": str(tmp_path / "spool.jsonl"),
    }
    try:
        async with sandbox() as upstream:
            settings = settings_with(upstream, relayed, telemetry=telemetry)
            async with replica(settings) as (gateway, client):
                before = (await ask(client)).headers["x-tara-request-id"]
                await telemetry_of(gateway).flush()
                await relay.stop()
                during = [
                    (await ask(client, f"s-{i}")).headers["x-tara-request-id"] for i in range(5)
                ]

                def spooled() -> bool:
                    return sample(gateway, "tara_interaction_spool_records") == 5

                await eventually(spooled)
                assert sample(gateway, "tara_interaction_log_up") == 0
                await relay.start()
                after = [
                    (await ask(client, f"t-{i}")).headers["x-tara-request-id"] for i in range(3)
                ]
                await eventually(lambda: sample(gateway, "tara_interaction_log_up") == 1)
                await telemetry_of(gateway).flush()
                dropped = gateway.metrics.registry.get_sample_value(
                    "tara_interactions_dropped_total", {"reason": "spool_full"}
                )
    finally:
        await relay.stop()
    log = open_log(dsn, settings.telemetry)
    try:
        stored = {ix.request_id async for ix in log.iter_interactions()}
    finally:
        await log.aclose()
    assert stored == {before, *during, *after}
    assert dropped is None


async def test_graceful_shutdown_writes_every_queued_request(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    async with sandbox() as upstream:
        # Batches that would wait a minute: only the shutdown flush can write them.
        settings = settings_with(
            upstream, url, telemetry={"flush_interval": 60, "batch_size": 10_000}
        )
        async with replica(settings) as (_gateway, client):
            answers = await asyncio.gather(*(ask(client, f"s-{i}") for i in range(40)))
            ids = {a.headers["x-tara-request-id"] for a in answers}
            assert (await rate(client, next(iter(ids)), rating=5)).status_code == 200
    log = open_log(url, settings.telemetry)
    try:
        rows: list[Interaction] = [ix async for ix in log.iter_interactions()]
    finally:
        await log.aclose()
    assert {r.request_id for r in rows} == ids
    assert sum(r.rating == 5 for r in rows) == 1
