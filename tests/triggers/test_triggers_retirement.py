"""The base-model retirement trigger: once, at the lead time, naming the successor; never unknown.

The rule is a pure function, tested as a table over time; then through
``tara triggers check`` (the real interaction log, the sandbox as the
OpenAI backend whose model list it reads) with a fine-tuned stable model.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import httpx
import pytest

from tara.cli import main
from tara.sandbox.server import running_sandbox
from tara.triggers.check import decide
from tara.triggers.config import TriggerSettings
from tara.triggers.model import Scope, TriggerResult
from tara.triggers.retirement import BASE_RETIREMENT, base_model_retirement, base_of, retires_at
from tara.triggers.state import TriggerState

DAY = 86_400.0
SHUTDOWN = dt.date(2026, 10, 23)
STABLE = "ft:gpt-4-0613:tara-org:tara:8xYz"
SUCCESSOR = "gpt-4.1-mini-2025-04-14"
CFG = TriggerSettings(successor_base_model=SUCCESSOR)


def _check(days_before: float, last_run: float | None = None, model: str = STABLE) -> TriggerResult:
    now = retires_at(SHUTDOWN) - days_before * DAY
    return base_model_retirement(
        "tara-tutor",
        model,
        now,
        retirements=CFG.base_model_retirements,
        lead=CFG.retirement_lead,
        successor=SUCCESSOR,
        last_run=last_run,
    )


def test_the_base_of_a_fine_tuned_model_is_in_its_name() -> None:
    assert base_of("ft:gpt-4o-mini-2024-07-18:org:tara:abc") == "gpt-4o-mini-2024-07-18"
    assert base_of("ft:Qwen2.5-0.5B:tara:01234567") == "Qwen2.5-0.5B"
    assert base_of("gpt-4-0613") == "gpt-4-0613"
    assert base_of("ft:") == "ft:"


def test_openais_published_shutdown_dates_are_the_defaults() -> None:
    assert TriggerSettings().base_model_retirements["gpt-4-0613"] == SHUTDOWN
    assert TriggerSettings().retirement_lead == dt.timedelta(days=60)


@pytest.mark.parametrize(
    ("days_before", "fires"),
    [(120, False), (60.01, False), (60, True), (30, True), (0, True), (-3, True)],
)
def test_it_fires_from_the_lead_time_on(days_before: float, fires: bool) -> None:
    result = _check(days_before)
    assert result.fired is fires
    assert result.value == pytest.approx(days_before)
    assert (result.threshold, result.op) == (60, "<=")


def test_it_names_the_successor_and_the_date() -> None:
    result = _check(45)
    assert result.name == BASE_RETIREMENT
    assert result.scope == Scope(track="tara-tutor")
    assert result.evidence == {
        "stable_model": STABLE,
        "base_model": "gpt-4-0613",
        "retires": "2026-10-23",
        "successor": SUCCESSOR,
        "successor_retires": None,
        "already_served": False,
    }


def test_it_fires_once_per_shutdown() -> None:
    # A run it started inside the lead window serves this shutdown ...
    started = retires_at(SHUTDOWN) - 50 * DAY
    assert not _check(40, last_run=started).fired
    assert not _check(-1, last_run=started).fired
    # ... a run long before (for an earlier reason) does not.
    assert _check(40, last_run=started - 100 * DAY).fired


def test_it_never_fires_for_a_model_without_a_known_date() -> None:
    for model in ("gpt-4.1-mini-2025-04-14", "ft:Qwen2.5-0.5B:tara:0123", "tara-stable"):
        for days in (60, 1, -30):
            result = _check(days, model=model)
            assert not result.fired
            assert result.outcome == "insufficient"
            assert result.value is None


def test_a_fired_rule_proposes_a_run_on_the_successor(tmp_path: Path) -> None:
    state = TriggerState.load(tmp_path)
    now = retires_at(SHUTDOWN) - 30 * DAY
    [verdict] = decide([_check(30)], state, now, CFG, min_rating=4)
    assert verdict.would_start
    assert verdict.base_model == SUCCESSOR
    assert verdict.prepare_args[-2:] == ("--track", "tara-tutor")
    assert verdict.as_json()["base_model"] == SUCCESSOR
    # Once the run is recorded, the next check stays quiet.
    state.record(BASE_RETIREMENT, Scope(track="tara-tutor"), now)
    later = _check(20, last_run=state.last_run(Scope(track="tara-tutor"), BASE_RETIREMENT))
    assert not later.fired


async def test_triggers_check_reads_the_stable_model_and_the_backends_model_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    at = dt.datetime.combine(SHUTDOWN, dt.time(), dt.UTC) - dt.timedelta(days=30)
    async with running_sandbox() as sandbox:
        for name, value in {
            "TARA_TELEMETRY__SQLITE_PATH": str(tmp_path / "log.db"),
            "TARA_TRIGGERS__STATE_DIR": str(tmp_path),
            "TARA_UPSTREAM__BASE_URL": sandbox,
            "TARA_TRACKS": json.dumps({"tara-tutor": {"stable_model": STABLE}}),
            "TARA_FINETUNE__BASE_MODEL": SUCCESSOR,
        }.items():
            monkeypatch.setenv(name, value)
        async with httpx.AsyncClient(headers={"Authorization": "Bearer sk-x"}) as http:
            # The sandbox serves the successor, not the retiring base.
            await http.post(f"{sandbox.removesuffix('/v1')}/sandbox/models/{SUCCESSOR}", json={})
        argv = ["triggers", "check", "--json", "--at", at.isoformat()]
        code = await asyncio.to_thread(main, argv)
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    [row] = [t for t in report["triggers"] if t["trigger"] == BASE_RETIREMENT]
    assert row["fired"]
    assert row["would_start"]
    assert row["base_model"] == SUCCESSOR
    assert row["evidence"]["base_listed"] is False
    assert row["evidence"]["successor_listed"] is True
    assert row["value"] == pytest.approx(30)
