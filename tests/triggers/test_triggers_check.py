"""The run state file, the cooldown, the planned prepare commands, the metric and the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console
from triggers_traffic import HI_MATH, NOW, traffic

from tara.cli import main
from tara.settings import Settings
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.telemetry.metrics import MetricsRecorder
from tara.triggers.check import CheckReport, count_fired, decide, iso, run_check
from tara.triggers.cli import render
from tara.triggers.config import TriggerSettings
from tara.triggers.model import EVERYTHING, Scope, TriggerResult
from tara.triggers.state import FILENAME, StateError, TriggerState, cooling_down

DAY = 86_400.0
CFG = TriggerSettings()


def fired(name: str, scope: Scope, **evidence: float) -> TriggerResult:
    return TriggerResult(name, True, scope, 1.0, 0.5, ">", evidence)


@pytest.mark.parametrize(
    ("last_run", "now", "expected"),
    [(None, 100.0, False), (0.0, 13 * DAY, True), (0.0, 14 * DAY, False), (0.0, 20 * DAY, False)],
)
def test_cooling_down(last_run: float | None, now: float, expected: bool) -> None:
    assert cooling_down(last_run, now, 14 * DAY) is expected


def test_state_round_trips_and_keeps_each_trigger(tmp_path: Path) -> None:
    state = TriggerState.load(tmp_path / "state")
    assert state.last_run(HI_MATH) is None
    state.record("data_volume", HI_MATH, 100.0)
    state.record("low_rating", HI_MATH, 200.0)
    state.record("academic_year", EVERYTHING, 50.0)
    state.save()
    again = TriggerState.load(tmp_path / "state")
    assert again.last_run(HI_MATH) == 200.0
    assert again.last_run(HI_MATH, "data_volume") == 100.0
    assert again.last_run(EVERYTHING, "academic_year") == 50.0
    assert again.last_run(Scope(language="ta")) is None
    assert [p.name for p in (tmp_path / "state").iterdir()] == [FILENAME]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"format": "other"}', "is not a"),
        ('{"format": "tara-triggers-state/1", "runs": {"*": {"x": "soon"}}}', "must map"),
    ],
)
def test_unreadable_state_is_an_error_not_an_empty_state(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / FILENAME).write_text(text)
    with pytest.raises(StateError, match=message):
        TriggerState.load(tmp_path)


def test_decide_applies_the_cooldown_per_scope_and_plans_prepare(tmp_path: Path) -> None:
    state = TriggerState(tmp_path / FILENAME)
    state.record("low_rating", HI_MATH, NOW - 3 * DAY)
    ta = Scope(language="ta", subject="math")
    results = [
        fired("negative_feedback", HI_MATH),  # cooling: hi×math ran 3 days ago
        fired("data_volume", ta, since=NOW - 20 * DAY),
        fired("latency_p95", Scope(track="tara-tutor")),
        TriggerResult("low_rating", False, ta, 4.2, 3.5, "<"),
    ]
    verdicts = decide(results, state, NOW, CFG, 4)
    assert [(v.cooling_down, v.would_start) for v in verdicts] == [
        (True, False),
        (False, True),
        (False, True),
        (False, False),
    ]
    assert verdicts[0].last_run == NOW - 3 * DAY
    assert verdicts[1].prepare_args == (
        "tara", "finetune", "prepare", "--since", iso(NOW - 20 * DAY), "--min-rating", "4",
    )  # fmt: skip
    lookback = NOW - CFG.volume_lookback.total_seconds()
    assert verdicts[2].prepare_args[-2:] == ("--track", "tara-tutor")
    assert verdicts[2].prepare_args[4] == iso(lookback)
    later = decide(results, state, NOW + 12 * DAY, CFG, 4)
    assert later[0].would_start
    assert later[0].prepare_args[4] == iso(NOW - 3 * DAY)  # data since that last run


async def test_run_check_reads_the_log_and_counts_fired_triggers(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = SqliteInteractionLog(str(db))
    await log.migrate()
    await log.write_batch(traffic(NOW))
    await log.aclose()
    settings = Settings(
        database_url=f"sqlite:///{db}",
        triggers=TriggerSettings(state_dir=tmp_path / "state", min_high_quality=50),
    )
    registry = CollectorRegistry()
    metrics = MetricsRecorder.on(registry)
    report = await run_check(settings, now=NOW, metrics=metrics)
    fired_now = {(v.result.name, v.result.scope.key) for v in report.fired}
    assert fired_now == {
        ("data_volume", "language=hi,subject=math"),
        ("low_rating", "language=hi,subject=math"),
        ("negative_feedback", "language=hi,subject=math"),
        ("cultural_complaints", "language=hi,subject=math"),
        ("knowledge_gap", "language=hi,subject=math"),  # grade 8 (and topic other): mean 3.0
        ("new_subject", "subject=biology"),  # not configured; grade 11 needs more history
    }
    assert report.runs() == [
        ("tara", "finetune", "prepare", "--since", iso(NOW - 90 * DAY), "--min-rating", "4")
    ]

    def sample(name: str) -> float | None:
        return registry.get_sample_value("tara_trigger_fired_total", {"trigger": name})

    assert sample("data_volume") == 1
    assert sample("new_subject") == 1
    assert sample("latency_p95") is None
    count_fired(report, metrics)
    assert sample("low_rating") == 2
    lines = []
    console = Console(record=True, width=200)
    render(report, console)
    lines = console.export_text()
    assert "FIRES" in lines
    cooling = decide([report.fired[0].result], _ran_today(tmp_path), NOW, CFG, 4)
    console = Console(record=True, width=200)
    render(CheckReport(NOW, 7 * DAY, cooling), console)
    assert "fired, cooling down" in console.export_text()
    assert "not enough data" in lines
    assert "tara finetune prepare --since" in lines


def _ran_today(tmp_path: Path) -> TriggerState:
    state = TriggerState(tmp_path / FILENAME)
    state.record("data_volume", HI_MATH, NOW - 3600)
    return state


def test_cli_check_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TARA_REDIS_URL", raising=False)
    monkeypatch.setenv("TARA_DATABASE_URL", f"sqlite:///{tmp_path / 'log.db'}")
    monkeypatch.setenv("TARA_TRIGGERS__STATE_DIR", str(tmp_path / "state"))
    state = TriggerState(tmp_path / "state" / FILENAME)
    state.record("academic_year", EVERYTHING, NOW - 40 * DAY)  # for the last start
    state.save()
    # NOW is 2023-11-15 in India; a board starting that day fires, inside a 60-day cooldown.
    config = tmp_path / "tara.toml"
    config.write_text('[triggers]\nacademic_year_starts = ["11-15"]\ncooldown = "P60D"\n')
    code = main(["triggers", "check", "--json", "--at", str(NOW), "--config", str(config)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["at"] == NOW
    assert {t["trigger"] for t in report["triggers"]} >= {"data_volume", "academic_year"}
    academic = next(t for t in report["triggers"] if t["trigger"] == "academic_year")
    assert academic["fired"] is True
    assert academic["cooling_down"] is True
    assert academic["would_start"] is False
    assert report["would_start"] == []
    assert all(t["outcome"] == "insufficient" for t in report["triggers"][:-1] if not t["fired"])


def test_cli_check_table_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TARA_REDIS_URL", raising=False)
    monkeypatch.setenv("TARA_DATABASE_URL", f"sqlite:///{tmp_path / 'log.db'}")
    monkeypatch.setenv("TARA_TRIGGERS__STATE_DIR", str(tmp_path))
    assert main(["triggers", "check", "--since", "2023-11-01", "--at", str(NOW)]) == 0
    out = capsys.readouterr().out
    assert "Fine-tuning triggers as of 2023-11-14" in out
    assert "no fine-tuning run would start" in out
    assert main(["triggers", "check", "--since", "yesterday"]) == 2
    assert "invalid time" in capsys.readouterr().err
    (tmp_path / FILENAME).write_text("not json")
    assert main(["triggers", "check"]) == 1
    assert "not JSON" in capsys.readouterr().err


def test_settings_carry_a_triggers_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARA_TRIGGERS__COOLDOWN", "P21D")
    monkeypatch.setenv("TARA_TRIGGERS__MIN_HIGH_QUALITY", "5000")
    settings = Settings()
    assert settings.triggers.cooldown == timedelta(days=21)
    assert settings.triggers.min_high_quality == 5000


@pytest.mark.redis
def test_cli_check_reads_window_stats_from_redis(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_client: object,
    namespace: str,
) -> None:
    from tcp_relay import REDIS_URL

    monkeypatch.setenv("TARA_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("TARA_REDIS_NAMESPACE", namespace)
    monkeypatch.setenv("TARA_DATABASE_URL", f"sqlite:///{tmp_path / 'log.db'}")
    monkeypatch.setenv("TARA_TRIGGERS__STATE_DIR", str(tmp_path))
    assert main(["triggers", "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    latency = next(t for t in report["triggers"] if t["trigger"] == "latency_p95")
    assert latency["outcome"] == "insufficient"


def test_infinite_rises_render_as_infinity_and_json_null(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tara.triggers.check import CheckReport, Verdict
    from tara.triggers.cli import _json_safe

    rise = TriggerResult("cultural_complaints", True, HI_MATH, float("inf"), 0.0, ">", {})
    report = CheckReport(NOW, 7 * DAY, [Verdict(rise, None, False, ("tara", "x"))])
    console = Console(record=True, width=200)
    render(report, console)
    assert "+∞" in console.export_text()
    assert _json_safe(report.as_json())["triggers"][0]["value"] is None  # type: ignore[index]


async def test_check_takes_requests_without_a_language_or_subject(tmp_path: Path) -> None:
    # A request without X-Tara-Language next to one with it: scopes with and
    # without a value must sort together, not raise TypeError on None < "hi".
    from triggers_traffic import Maker

    make = Maker()
    db = tmp_path / "log.db"
    log = SqliteInteractionLog(str(db))
    await log.migrate()
    await log.write_batch(
        [make(NOW - DAY, rating=4), make(NOW - DAY, language=None, subject=None, rating=2)]
    )
    await log.aclose()
    settings = Settings(
        database_url=f"sqlite:///{db}", triggers=TriggerSettings(state_dir=tmp_path)
    )
    report = await run_check(settings, now=NOW)
    scopes = {v.result.scope.key for v in report.verdicts if v.result.name == "low_rating"}
    assert scopes == {"*", "language=hi,subject=math"}


def test_a_topic_cools_down_with_its_language_and_subject(tmp_path: Path) -> None:
    state = TriggerState(tmp_path / FILENAME)
    state.record("low_rating", HI_MATH, NOW - 3 * DAY)
    algebra = Scope(language="hi", subject="math", topic="algebra")
    (verdict,) = decide([fired("topic_retry_rate", algebra)], state, NOW, CFG, 4)
    assert (verdict.cooling_down, verdict.last_run) == (True, NOW - 3 * DAY)
    assert algebra.run_scope == HI_MATH
    assert Scope(track="t").run_scope == Scope(track="t")


def test_cli_check_finds_latency_degraded_in_one_language_and_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from triggers_traffic import TA_PHYS, Maker

    make = Maker()
    rows = []
    for scope, slower in ((HI_MATH, 1.3), (TA_PHYS, 1.0)):
        for i in range(150):
            spread = 0.5 + i / 150
            context = {"language": scope.language, "subject": scope.subject}
            rows.append(make(NOW - 9 * DAY + i, latency_s=spread, **context))
            rows.append(make(NOW - 2 * DAY + i, latency_s=slower * spread, **context))
    db = tmp_path / "log.db"
    log = SqliteInteractionLog(str(db))
    asyncio.run(log.migrate())
    asyncio.run(log.write_batch(rows))
    asyncio.run(log.aclose())
    monkeypatch.delenv("TARA_REDIS_URL", raising=False)
    monkeypatch.setenv("TARA_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("TARA_TRIGGERS__STATE_DIR", str(tmp_path / "state"))
    assert main(["triggers", "check", "--json", "--at", str(NOW)]) == 0
    report = json.loads(capsys.readouterr().out)
    latency = {
        ",".join(f"{k}={v}" for k, v in t["scope"].items()): t
        for t in report["triggers"]
        if t["trigger"] == "latency_p95"
    }
    assert set(latency) == {"track=tara-tutor", HI_MATH.key, TA_PHYS.key}
    assert latency[HI_MATH.key]["fired"] is True
    assert latency[TA_PHYS.key]["fired"] is False
    assert latency[HI_MATH.key]["window"] == {
        "start": NOW - 7 * DAY,
        "end": NOW,
        "previous_start": NOW - 14 * DAY,
    }
    assert (latency[HI_MATH.key]["sample"], latency[HI_MATH.key]["min_sample"]) == (150, 100)


def test_cli_check_says_when_the_topic_lexicon_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TARA_REDIS_URL", raising=False)
    monkeypatch.setenv("TARA_DATABASE_URL", f"sqlite:///{tmp_path / 'log.db'}")
    monkeypatch.setenv("TARA_TRIGGERS__STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TARA_TRIGGERS__TOPIC_LEXICON", str(tmp_path / "missing.txt"))
    assert main(["triggers", "check"]) == 1
    assert "cannot read topic lexicon" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("algebra\n")
    monkeypatch.setenv("TARA_TRIGGERS__TOPIC_LEXICON", str(tmp_path / "bad.txt"))
    assert main(["triggers", "check"]) == 1
    assert "bad.txt:1: entry before the first [subject/topic] section" in capsys.readouterr().err
