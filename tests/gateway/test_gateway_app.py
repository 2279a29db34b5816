"""The gateway in-process (httpx ASGITransport): auth, bad input, probes, models, metrics."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest
from gateway_harness import AUTH, MESSAGES, UPSTREAM_KEY, ListSink, gateway_settings, in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tara.rollout.routing_store_memory import MemoryRoutingStore

CONTRACT_METRICS = [
    "tara_requests_total",
    "tara_request_duration_seconds",
    "tara_time_to_first_token_seconds",
    "tara_upstream_retries_total",
    "tara_fallbacks_total",
    "tara_user_retries_total",
    "tara_feedback_rating",
    "tara_feedback_tags_total",
    "tara_tokens_total",
    "tara_rollout_canary_weight",
    "tara_rollout_stage",
    "tara_rollout_decisions_total",
    "tara_trigger_fired_total",
    "tara_finetune_runs_total",
]


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code


async def test_probes_models_and_metrics_exposition() -> None:
    async with in_process(gateway_settings()) as (_gw, client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["routing_table"]["fresh"] is True
        models = await client.get("/v1/models", headers=AUTH)
        assert models.json() == {
            "object": "list",
            "data": [{"id": "tara-tutor", "object": "model", "created": 0, "owned_by": "tara"}],
        }
        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
    for name in CONTRACT_METRICS:
        assert f"# TYPE {name} " in text, name
    assert "tara_routing_table_healthy 1.0" in text


async def test_readyz_is_503_before_start_up() -> None:
    from tara.gateway.app import build_gateway

    gateway = build_gateway(gateway_settings())
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "sk-client-test"}],
)
async def test_client_key_is_required(headers: dict[str, str]) -> None:
    async with in_process(gateway_settings()) as (_gw, client):
        body = {"model": "tara-tutor", "messages": MESSAGES}
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert_openai_error(response, 401, "invalid_api_key")
        assert_openai_error(await client.get("/v1/models", headers=headers), 401)
        assert (await client.get("/metrics")).status_code == 200


async def test_auth_can_be_turned_off_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with in_process(gateway_settings(auth={"enabled": False})) as (_gw, client):
        assert (await client.get("/v1/models")).status_code == 200
    assert "auth is OFF" in caplog.text


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_request"),
        (orjson.dumps({"model": "tara-tutor"}), 400, "invalid_request"),
        (orjson.dumps({"model": "nope", "messages": MESSAGES}), 404, "model_not_found"),
    ],
)
async def test_bad_requests(content: bytes, status: int, code: str) -> None:
    async with in_process(gateway_settings()) as (_gw, client):
        response = await client.post("/v1/chat/completions", content=content, headers=AUTH)
        assert_openai_error(response, status, code)
        assert len(response.headers["x-tara-request-id"]) == 32
        text = (await client.get("/metrics")).text
    assert f'tara_rejected_requests_total{{route="chat",status="{status}"}} 1.0' in text


async def test_wrong_method_and_unknown_path() -> None:
    async with in_process(gateway_settings()) as (_gw, client):
        response = await client.get("/v1/chat/completions", headers=AUTH)
        assert_openai_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "POST"
        assert_openai_error(await client.get("/v1/nothing", headers=AUTH), 404, "not_found")
        assert_openai_error(await client.post("/v1/models", headers=AUTH), 405)


async def test_body_limit_declared_and_streamed() -> None:
    async with in_process(gateway_settings(server={"max_body_bytes": 100})) as (_gw, client):
        big = orjson.dumps(
            {"model": "tara-tutor", "messages": [{"role": "user", "content": "x" * 200}]}
        )
        response = await client.post("/v1/chat/completions", content=big, headers=AUTH)
        assert_openai_error(response, 413, "request_too_large")

        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 30

        streamed = await client.post("/v1/chat/completions", content=chunks(), headers=AUTH)
        assert_openai_error(streamed, 413, "request_too_large")


async def test_upstream_down_is_502_and_secret_free(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = ListSink()
    async with in_process(gateway_settings(), sinks=[sink]) as (_gw, client):
        body = {"model": "tara-tutor", "messages": MESSAGES, "user": "student-raw-id-77"}
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert_openai_error(response, 502, "upstream_connection_error")
        assert "3 attempts" in response.json()["error"]["message"]
        assert response.headers["x-tara-variant"] == "stable"
        assert response.headers["x-tara-model"] == "tara-stable"
        metrics = (await client.get("/metrics")).text
    assert UPSTREAM_KEY not in response.text
    assert "127.0.0.1" not in response.text
    assert UPSTREAM_KEY not in caplog.text
    assert "student-raw-id-77" not in metrics
    assert (
        'tara_upstream_retries_total{reason="connection",track="tara-tutor",variant="stable"} 2.0'
        in metrics
    )
    [record] = sink.records
    assert (record.status, record.error_class, record.variant) == (502, "connection", "stable")
    assert record.student_hash is not None
    assert "student-raw-id-77" not in record.student_hash
    assert record.request_id == response.headers["x-tara-request-id"]


async def test_a_failing_sink_loses_records_not_requests() -> None:
    class Broken:
        def record(self, interaction: object) -> None:
            raise RuntimeError("sink down")

    kept = ListSink()
    async with in_process(gateway_settings(), sinks=[Broken(), kept]) as (_gw, client):
        body = {"model": "tara-tutor", "messages": MESSAGES}
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.status_code == 502
        metrics = (await client.get("/metrics")).text
    assert len(kept.records) == 1
    assert 'tara_interactions_dropped_total{reason="sink_error"} 1.0' in metrics


async def test_store_routes_are_used() -> None:
    from gateway_harness import canary_table

    store = MemoryRoutingStore()
    await store.save_table(canary_table("tara-candidate-good", 10_000), 0)
    sink = ListSink()
    async with in_process(gateway_settings(), store=store, sinks=[sink]) as (_gw, client):
        body = {"model": "tara-tutor", "messages": MESSAGES}
        headers = {**AUTH, "X-Tara-User": "s1"}
        # No upstream: the canary fails, falls back to stable, which fails too.
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 502
    assert response.headers["x-tara-variant"] == "stable"
    canary, served = sink.records
    assert (canary.variant, canary.model, canary.error_class) == (
        "canary",
        "tara-candidate-good",
        "connection",
    )
    assert canary.request_id == served.request_id + "-canary"
    assert served.fallback
    assert served.variant == "stable"


header_names = st.sampled_from(
    [
        "x-tara-user",
        "x-tara-subject",
        "x-tara-language",
        "x-tara-grade",
        "x-tara-retry",
        "content-type",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
fuzz_bodies = (
    st.binary(max_size=120)
    | json_values.map(orjson.dumps)
    | st.fixed_dictionaries(
        {"model": st.sampled_from(["tara-tutor", "x"]) | json_values},
        optional={
            "messages": json_values,
            "stream": json_values,
            "metadata": json_values,
            "user": json_values,
        },
    ).map(orjson.dumps)
)


def test_fuzz_no_input_yields_a_500() -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    sink = ListSink()
    cfg = gateway_settings(upstream={"retry_attempts": 1})
    manager = in_process(cfg, sinks=[sink])
    _gw, client = loop.run_until_complete(manager.__aenter__())

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        body=fuzz_bodies,
        headers=st.dictionaries(
            header_names,
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
        ),
    )
    def check(body: bytes, headers: dict[str, str]) -> None:
        response = loop.run_until_complete(
            client.post("/v1/chat/completions", content=body, headers={**AUTH, **headers})
        )
        assert response.status_code in (400, 404, 502), response.text
        assert set(response.json()["error"]) == {"message", "type", "code", "param"}

    try:
        check()
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()
    assert all(r.status == 502 for r in sink.records)
