"""The admin rollout API in-process on a real gateway app (auth included), over real stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara.gateway.app import Gateway, build_gateway
from tara.rollout.admin_api import admin_routes, routes_from_settings
from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.model import Rollout
from tara.rollout.rollout_store_memory import MemoryRolloutStore
from tara.rollout.rollout_store_redis import RedisRolloutStore
from tara.rollout.routing import route
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.rollout.service import RolloutService
from tara.serving import free_port
from tara.settings import Settings
from tara.state import open_state
from tara.telemetry.windows import WindowStats, latency_bucket
from tcp_relay import RedisProxy

ADMIN_KEY = "sk-admin-test"
CLIENT_KEY = "sk-client-test"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ROLLOUT = RolloutSettings(
    stages=[
        StageSettings(percent=10, duration=600, min_requests=50, min_ratings=0, intensive=True),
        StageSettings(percent=50, duration=1200, min_requests=0, min_ratings=0),
    ]
)


def settings() -> Settings:
    return Settings(
        upstream={"base_url": f"http://127.0.0.1:{free_port()}/v1"},
        auth={"client_keys": [CLIENT_KEY], "admin_key": ADMIN_KEY},
        rollout=ROLLOUT,
        routing_refresh_seconds=0.05,
    )


class Clock:
    now = 10_000.0

    def __call__(self) -> float:
        return self.now


def stats(requests: int, errors: int, ratings: list[int], seconds: float) -> WindowStats:
    s = WindowStats(requests=requests, errors={"upstream": errors} if errors else {})
    s.ratings = ratings
    s.latency[latency_bucket(seconds)] = requests
    s.latency_sum = seconds * requests
    return s


@dataclass
class Api:
    client: httpx.AsyncClient
    gateway: Gateway
    service: RolloutService
    clock: Clock

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body)

    async def start(self, **body: Any) -> dict[str, Any]:
        response = await self.post("/admin/rollouts", {"track": "tara-tutor", **body})
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return body["error"]  # type: ignore[no-any-return]


async def live_stats(rollout: Rollout) -> tuple[WindowStats, WindowStats]:
    if rollout.candidate_model == "ft-broken-stats":
        raise ConnectionError("redis went away")
    canary = stats(400, 80, [5, 5, 10, 10, 10], 0.4)
    stable = stats(4000, 40, [30, 30, 100, 200, 200], 0.4)
    return canary, stable


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    routing = MemoryRoutingStore()
    clock = Clock()
    cfg = settings()
    stable = {n: t.stable_model for n, t in cfg.tracks.items()}
    service = RolloutService(MemoryRolloutStore(), routing, ROLLOUT, stable, clock=clock)
    gateway = build_gateway(
        cfg, routing_store=routing, routes=admin_routes(service, stats_reader=live_stats)
    )
    async with gateway.lifespan():
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=ADMIN
        ) as client:
            yield Api(client, gateway, service, clock)


async def test_admin_routes_need_the_admin_key(api: Api) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": f"Bearer {CLIENT_KEY}"}):
        response = await api.client.get("/admin/rollouts", headers=headers)
        assert response.status_code == 401
    assert (await api.service.list()) == []


async def test_start_list_and_status(api: Api) -> None:
    started = await api.start(candidate="ft-math", subject="math", language="hi")
    assert started["phase"] == "progressing"
    assert (started["stage"], started["stages"], started["weight_percent"]) == (1, 2, 10.0)
    assert started["segment"] == "math:hi"
    assert started["stable_model"] == "tara-stable"
    assert started["next_weight_percent"] == 50.0
    assert started["history"][0]["actor"] == "admin-api"
    api.clock.now += 150
    listed = (await api.client.get("/admin/rollouts")).json()
    assert [r["id"] for r in listed["data"]] == [started["id"]]
    assert listed["data"][0]["time_left_seconds"] == 450.0
    assert "history" not in listed["data"][0]
    status = (await api.client.get(f"/admin/rollouts/{started['id']}")).json()
    assert (status["stage_elapsed_seconds"], status["time_left_seconds"]) == (150.0, 450.0)
    assert status["plan"]["stages"][0]["weight_bp"] == 1000


async def test_status_shows_live_numbers_with_confidence(api: Api) -> None:
    started = await api.start(candidate="ft-math", subject="math")
    live = (await api.client.get(f"/admin/rollouts/{started['id']}")).json()["live"]
    assert (live["fail_confidence"], live["pass_confidence"]) == (0.95, 0.95)
    assert live["analysis"]["outcome"] == "fail"  # 20% errors against 1%
    error_rate = next(m for m in live["analysis"]["measurements"] if m["check"] == "error_rate")
    assert error_rate["evidence"]["canary_rate"] == 0.2
    assert error_rate["evidence"]["lower"] > 0.05  # the confidence bound the verdict rests on
    assert live["comparison"]["canary"]["requests"] == 400
    assert live["comparison"]["rating_improvement"] < 0


async def test_status_survives_unreadable_stats_and_skips_finished_rollouts(api: Api) -> None:
    broken = await api.start(candidate="ft-broken-stats")
    status = (await api.client.get(f"/admin/rollouts/{broken['id']}")).json()
    assert status["live"] == {"error": "stats unreadable: ConnectionError: redis went away"}
    await api.post(f"/admin/rollouts/{broken['id']}/rollback")
    status = (await api.client.get(f"/admin/rollouts/{broken['id']}")).json()
    assert "live" not in status
    assert status["time_left_seconds"] is None


async def test_transitions_and_the_gateway_follows(api: Api) -> None:
    r = await api.start(candidate="ft-1", language="ta")
    rid = r["id"]
    promoted = (await api.post(f"/admin/rollouts/{rid}/promote", {"reason": "early win"})).json()
    assert (promoted["stage"], promoted["weight_percent"]) == (2, 50.0)
    assert promoted["history"][-1]["reason"] == "promoted by hand: early win"
    paused = (await api.post(f"/admin/rollouts/{rid}/pause")).json()
    assert paused["phase"] == "paused"
    resumed = await api.post(f"/admin/rollouts/{rid}/resume", {"actor": "sre-anu"})
    assert resumed.json()["history"][-1]["actor"] == "sre-anu"
    await api.gateway.cache.refresh_once()
    students = [f"s{i}" for i in range(200)]
    before = [route(api.gateway.cache.table, "tara-tutor", s, "math", "ta") for s in students]
    assert {x.variant for x in before if x is not None} == {"canary", "stable"}
    back = await api.post(f"/admin/rollouts/{rid}/rollback", {"reason": "complaints"})
    assert back.json()["phase"] == "rolled_back"
    await api.gateway.cache.refresh_once()
    after = [route(api.gateway.cache.table, "tara-tutor", s, "math", "ta") for s in students]
    assert {(x.variant, x.model) for x in after if x is not None} == {("stable", "tara-stable")}


async def test_success_makes_the_candidate_stable(api: Api) -> None:
    rid = (await api.start(candidate="ft-1"))["id"]
    await api.post(f"/admin/rollouts/{rid}/promote")
    done = (await api.post(f"/admin/rollouts/{rid}/promote")).json()
    assert (done["phase"], done["weight_percent"]) == ("succeeded", 100.0)
    await api.gateway.cache.refresh_once()
    assert api.gateway.cache.table.tracks["tara-tutor"].stable_model == "ft-1"
    models = await api.client.get("/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
    assert [m["id"] for m in models.json()["data"]] == ["tara-tutor"]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"track": "gpt-4", "candidate": "ft"}, 422, "unknown_track", "track"),
        ({"track": "tara-tutor"}, 422, "missing_field", "candidate"),
        ({"candidate": "ft"}, 422, "missing_field", "track"),
        ({"track": "tara-tutor", "candidate": 3}, 422, "invalid_value", "candidate"),
        (
            {"track": "tara-tutor", "candidate": "ft", "subject": ""},
            422,
            "invalid_value",
            "subject",
        ),
        ({"track": "tara-tutor", "candidate": "ft", "subject": "a:b"}, 422, "invalid_value", None),
        ({"track": "tara-tutor", "candidate": "tara-stable"}, 422, "invalid_value", None),
        (["not", "an", "object"], 422, "invalid_body", None),
    ],
)
async def test_start_refuses_bad_input(
    api: Api, body: Any, status: int, code: str, param: str | None
) -> None:
    response = await api.post("/admin/rollouts", body)
    assert response.status_code == status
    error = error_of(response)
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    assert await api.service.list() == []


async def test_invalid_json_and_oversized_bodies(api: Api) -> None:
    response = await api.client.post("/admin/rollouts", content=b"{nope")
    assert (response.status_code, error_of(response)["code"]) == (400, "invalid_json")
    response = await api.client.post("/admin/rollouts", content=b" " * (65 * 1024))
    assert (response.status_code, error_of(response)["code"]) == (413, "body_too_large")


async def test_conflicts_and_invalid_transitions_are_409(api: Api) -> None:
    first = await api.start(candidate="ft-1", subject="math")
    response = await api.post("/admin/rollouts", {"track": "tara-tutor", "candidate": "ft-2"})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "rollout_conflict"
    assert first["id"] in error["message"]
    assert "overlaps all" in error["message"]
    await api.start(candidate="ft-3", subject="physics")  # disjoint: side by side
    await api.post(f"/admin/rollouts/{first['id']}/rollback")
    response = await api.post(f"/admin/rollouts/{first['id']}/promote")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "invalid_transition"
    assert error["message"] == f"cannot promote: rollout {first['id']} is rolled_back"


async def test_unknown_rollouts_actions_and_methods(api: Api) -> None:
    for response in (
        await api.client.get("/admin/rollouts/ro-missing"),
        await api.post("/admin/rollouts/ro-missing/pause"),
    ):
        assert (response.status_code, error_of(response)["code"]) == (404, "rollout_not_found")
    rid = (await api.start(candidate="ft-1"))["id"]
    response = await api.post(f"/admin/rollouts/{rid}/explode")
    assert (response.status_code, error_of(response)["code"]) == (404, "unknown_action")
    response = await api.client.get(f"/admin/rollouts/{rid}/pause")
    assert response.status_code == 405


async def test_list_filters_by_track_and_activity(api: Api) -> None:
    a = await api.start(candidate="ft-a", subject="math")
    await api.post(f"/admin/rollouts/{a['id']}/abort")
    api.clock.now += 1  # listings are oldest first; equal times fall back to the random id
    b = await api.start(candidate="ft-b", subject="math")
    all_ids = [r["id"] for r in (await api.client.get("/admin/rollouts")).json()["data"]]
    assert all_ids == [a["id"], b["id"]]
    active = await api.client.get("/admin/rollouts", params={"active": "true"})
    assert [r["id"] for r in active.json()["data"]] == [b["id"]]
    other = await api.client.get("/admin/rollouts", params={"track": "tara-quiz"})
    assert other.json()["data"] == []


async def test_routes_from_settings_in_memory_with_an_embedded_controller() -> None:
    cfg = settings()
    state = open_state(cfg)
    state.new_lease(10.0)  # what an embedded controller (tara demo) takes
    app = build_gateway(cfg, routing_store=state.routing, routes=routes_from_settings(cfg, state))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", headers=ADMIN
    ) as http:
        report = (await http.get("/admin/state")).json()
        assert report["backend"] == "memory"
        assert report["controller"]["embedded"] is True
        response = await http.post(
            "/admin/rollouts", json={"track": "tara-tutor", "candidate": "ft-1"}
        )
        assert response.status_code == 201
        status = (await http.get(f"/admin/rollouts/{response.json()['id']}")).json()
        assert status["live"]["analysis"]["outcome"] == "inconclusive"  # no traffic yet
    table = await state.routing.load_table()
    assert table is not None
    assert table.tracks["tara-tutor"].canaries[0].model == "ft-1"


async def test_memory_state_without_a_controller_refuses_to_start_rollouts() -> None:
    cfg = settings()
    state = open_state(cfg)
    app = build_gateway(cfg, routing_store=state.routing, routes=routes_from_settings(cfg, state))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", headers=ADMIN
    ) as http:
        report = (await http.get("/admin/state")).json()
        assert report == {
            "backend": "memory",
            "shared": False,
            "namespace": None,
            "controller": {"embedded": False, "leading": False, "can_judge_rollouts": False},
        }
        response = await http.post(
            "/admin/rollouts", json={"track": "tara-tutor", "candidate": "ft-1"}
        )
        assert response.status_code == 409
        error = error_of(response)
        assert error["code"] == "no_controller"
        assert "TARA_REDIS_URL" in error["message"]
        assert (await http.get("/admin/rollouts")).json()["data"] == []
    assert await state.routing.load_table() is None


@pytest.mark.redis
async def test_shared_state_reports_whether_a_controller_leads(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    cfg = settings().model_copy(update={"redis_namespace": namespace})
    state = open_state(cfg, redis=redis_client)
    app = build_gateway(cfg, routing_store=state.routing, routes=routes_from_settings(cfg, state))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", headers=ADMIN
    ) as http:
        before = (await http.get("/admin/state")).json()
        lease = open_state(cfg, redis=redis_client).new_lease(10.0)  # a controller elsewhere
        assert await lease.acquire()
        after = (await http.get("/admin/state")).json()
        await lease.release()
    assert before == {
        "backend": "redis",
        "shared": True,
        "namespace": namespace,
        "controller": {"embedded": False, "leading": False, "can_judge_rollouts": True},
    }
    assert after["controller"]["leading"] is True


@pytest.mark.redis
async def test_state_store_outage_is_503(redis_proxy: RedisProxy, namespace: str) -> None:
    client = aioredis.Redis.from_url(
        redis_proxy.url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    routing = RedisRoutingStore(client, namespace)
    rollouts = RedisRolloutStore(client, namespace)
    service = RolloutService(rollouts, routing, ROLLOUT, {"tara-tutor": "tara-stable"})
    app = build_gateway(settings(), routing_store=routing, routes=admin_routes(service))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=ADMIN
        ) as http:
            started = await http.post(
                "/admin/rollouts", json={"track": "tara-tutor", "candidate": "ft-1"}
            )
            assert started.status_code == 201
            await redis_proxy.stop()
            for response in (
                await http.get("/admin/rollouts"),
                await http.post(f"/admin/rollouts/{started.json()['id']}/rollback"),
            ):
                assert response.status_code == 503
                error = error_of(response)
                assert (error["type"], error["code"]) == ("server_error", "state_store_unavailable")
    finally:
        await redis_proxy.start()
        await client.delete(rollouts.records_key, rollouts.revisions_key)
        await client.delete(routing.version_key, routing.table_key)
        await client.aclose()
