"""Operating the loop: ``tara finetune runs|show|approve|cancel``, the admin API, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tara.cli import main
from tara.gateway.server import gateway_from_settings
from tara.retrain.run import Run, RunState
from tara.retrain.stores import Ledger
from tara.rollout.routing import Segment
from tara.serving import free_port, running_server
from tara.settings import DEV_ADMIN_KEY, Settings
from tara.state import SharedState, open_state
from tara.triggers.model import Scope
from tara.triggers.state import TriggerState
from tcp_relay import REDIS_URL

pytestmark = pytest.mark.integration

NOW = time.time()
TA_PHYSICS = Segment("physics", "ta")


def run(run_id: str, state: RunState, age: float, **changes: object) -> Run:
    base = Run(
        run_id,
        "tara-tutor",
        Segment("math", "hi"),
        NOW - age,
        NOW - 7200,
        NOW - age,
        triggers=(
            {
                "trigger": "low_rating",
                "value": 2.8,
                "op": "<",
                "threshold": 3.5,
                "window_seconds": 604800.0,
                "evidence": {"ratings": 412},
            },
        ),
    ).entered(RunState.PENDING, NOW - age, "low_rating fired")
    return replace(base.entered(state, NOW - 60, f"now {state.value}"), **changes)  # type: ignore[arg-type]


@dataclass
class Api:
    url: str
    state: SharedState
    http: httpx.AsyncClient


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(state_backend="memory", telemetry={"sqlite_path": tmp_path / "ix.db"})
    state = open_state(settings)
    await state.runs.save(run("ft-trains", RunState.TRAINING, 900, job_id="ftjob-1"), 0)
    await state.runs.save(
        run("ft-waits", RunState.EVALUATED, 800, fine_tuned_model="ft:m:1", stable_model="s"), 0
    )
    await state.runs.save(run("ft-done", RunState.PROMOTED, 700, fine_tuned_model="ft:m:0"), 0)
    triggers = TriggerState()
    triggers.record("low_rating", Scope(language="hi", subject="math"), NOW - 600)
    decisions = [{"segment": "math:hi", "start": False, "reason": "run ft-trains is open"}]
    await state.ledger.save(Ledger(triggers, NOW - 30, decisions), 0)
    gateway = gateway_from_settings(settings, CollectorRegistry(), state)
    async with running_server(gateway) as url:
        headers = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as http:
            yield Api(url, state, http)


async def tara(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_runs_are_listed_newest_first_and_shown_whole(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: rich folds cells at 80
    listed = (await api.http.get("/admin/finetune/runs")).json()["data"]
    assert [r["id"] for r in listed] == ["ft-done", "ft-waits", "ft-trains"]
    waiting = listed[1]
    assert waiting["waiting_for_approval"] is True
    assert waiting["triggers"] == ["low_rating"]
    opened = (await api.http.get("/admin/finetune/runs", params={"open": "true"})).json()["data"]
    assert [r["id"] for r in opened] == ["ft-waits", "ft-trains"]

    code, out, _ = await tara(capsys, "finetune", "runs", "--url", api.url)
    assert code == 0
    assert "ft-waits" in out
    assert "needs approval" in out
    code, out, _ = await tara(capsys, "finetune", "show", "ft-trains", "--url", api.url, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["job_id"] == "ftjob-1"
    assert [s["state"] for s in shown["steps"]] == ["pending", "training"]
    code, out, _ = await tara(capsys, "finetune", "show", "ft-trains", "--url", api.url)
    assert code == 0
    assert "low_rating" in out
    assert "412" in out  # the trigger's sample size


async def test_approve_lets_an_evaluated_run_go_and_refuses_others(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await tara(capsys, "finetune", "approve", "ft-trains", "--url", api.url)
    assert code == 1
    assert "409" in err
    assert "it is training, not evaluated" in err
    code, _, _ = await tara(capsys, "finetune", "approve", "ft-waits", "--url", api.url)
    assert code == 0
    stored = await api.state.runs.get("ft-waits")
    assert stored is not None
    assert stored.approved_by == "admin-api"
    assert stored.state is RunState.EVALUATED  # the controller starts the canary


async def test_cancel_asks_the_controller_to_stop_a_run(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("finetune", "cancel", "ft-trains", "--url", api.url, "--reason", "bad slice")
    code, _, _ = await tara(capsys, *argv)
    assert code == 0
    stored = await api.state.runs.get("ft-trains")
    assert stored is not None
    assert (stored.cancel_requested_by, stored.cancel_reason) == ("admin-api", "bad slice")
    code, _, err = await tara(capsys, "finetune", "cancel", "ft-done", "--url", api.url)
    assert code == 1
    assert "already ended" in err
    code, _, err = await tara(capsys, "finetune", "cancel", "ft-nope", "--url", api.url)
    assert code == 1
    assert "404" in err


async def test_errors_are_openai_shaped_and_the_admin_key_is_required(api: Api) -> None:
    missing = await api.http.get("/admin/finetune/runs/ft-nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "run_not_found"
    bad = await api.http.post("/admin/finetune/runs/ft-waits/approve", content=b"[1]")
    assert bad.status_code == 422
    assert set(bad.json()["error"]) >= {"message", "type", "code"}
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        assert (await anonymous.get("/admin/finetune/runs")).status_code == 401


async def test_the_triggers_overview_shows_the_last_look_open_runs_and_cooldowns(
    api: Api,
) -> None:
    body = (await api.http.get("/admin/triggers")).json()
    assert body["checked_at"] == pytest.approx(NOW - 30)
    assert body["next_check_at"] == pytest.approx(NOW - 30 + 3600)
    assert body["decisions"][0]["reason"] == "run ft-trains is open"
    assert [r["id"] for r in body["open_runs"]] == ["ft-trains", "ft-waits"]
    [segment] = body["segments"]
    assert segment["segment"] == "math:hi"
    assert segment["cooling_down"] is True
    assert segment["cooldown_until"] == pytest.approx(NOW - 60 + 14 * 86_400)


def test_cancel_of_a_dataset_directory_still_cancels_its_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    code = main(["finetune", "cancel", "ft-0123456789ab", "--url", nowhere])
    _, err = capsys.readouterr()
    assert code == 2  # a run id, and no gateway to ask
    assert "cannot reach the gateway" in err
    (tmp_path / "ds").mkdir()
    code = main(["finetune", "cancel", str(tmp_path / "ds")])
    _, err = capsys.readouterr()
    assert code == 2  # the dataset form: no manifest there
    assert "holds no manifest.json" in err


@pytest.mark.redis
async def test_triggers_check_shows_open_runs_cooldowns_and_what_a_look_would_do(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_client: aioredis.Redis,
    namespace: str,
) -> None:
    settings = Settings(redis_url=REDIS_URL, redis_namespace=namespace)
    async with contextlib.aclosing(open_state(settings, redis=redis_client)) as state:
        await state.runs.save(run("ft-trains", RunState.TRAINING, 900), 0)
        await state.runs.save(run("ft-done", RunState.ROLLED_BACK, 700, segment=TA_PHYSICS), 0)
        await state.ledger.save(Ledger(TriggerState(), NOW - 30), 0)
    for name, value in {
        "TARA_REDIS_URL": REDIS_URL,
        "TARA_REDIS_NAMESPACE": namespace,
        "TARA_DATABASE_URL": f"sqlite:///{tmp_path / 'log.db'}",
        "COLUMNS": "200",
    }.items():
        monkeypatch.setenv(name, value)
    code, out, _ = await tara(capsys, "triggers", "check", "--json")
    assert code == 0
    loop = json.loads(out)["loop"]
    assert loop["enabled"] is True
    assert [r["id"] for r in loop["open_runs"]] == ["ft-trains"]
    cooling = {s["segment"]: s["cooling_down"] for s in loop["segments"]}
    assert cooling == {"math:hi": True, "physics:ta": True}
    assert loop["would"] == []  # an empty log fires nothing
    code, out, _ = await tara(capsys, "triggers", "check")
    assert code == 0
    assert "The controller's fine-tuning loop" in out
    assert "ft-trains (training)" in out
