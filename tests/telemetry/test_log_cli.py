"""``tara log purge`` end to end: the real CLI entry point against real stores."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from tara.cli import main
from tara.settings import load_settings
from tara.telemetry.interactions import Interaction
from tara.telemetry.log import InteractionLog
from tara.telemetry.log_cli import parse_age, purge_command
from tara.telemetry.log_postgres import PostgresInteractionLog
from tara.telemetry.log_sqlite import SqliteInteractionLog

DAY = 86_400.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * DAY),
        ("12h", 43_200),
        ("90m", 5400),
        ("45s", 45),
        ("2w", 14 * DAY),
        ("7", 7 * DAY),
        (" 1.5d ", 1.5 * DAY),
    ],
)
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "30 days", "-3d", "1y"])
def test_parse_age_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="invalid age"):
        parse_age(text)


def _seed(log: InteractionLog, ages_in_days: list[float]) -> None:
    now = time.time()
    base = Interaction(
        "x", 0.0, "tara-tutor", "default", "stable", "m", None, None, None, None, 200
    )
    rows = [
        dataclasses.replace(base, request_id=f"r{i}", created_at=now - age * DAY)
        for i, age in enumerate(ages_in_days)
    ]

    async def go() -> None:
        await log.migrate()
        await log.write_batch(rows)
        await log.aclose()

    asyncio.run(go())


def purge(older_than: str | None = None) -> int:
    """Run the command function as the CLI would, with settings from the environment."""
    return purge_command(argparse.Namespace(older_than=older_than), load_settings())


def _left(log: InteractionLog) -> list[str]:
    async def go() -> list[str]:
        found = [ix.request_id async for ix in log.iter_interactions()]
        await log.aclose()
        return found

    return asyncio.run(go())


def test_purge_sqlite_with_explicit_and_default_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "ix.db"
    monkeypatch.setenv("TARA_TELEMETRY__SQLITE_PATH", str(db))
    monkeypatch.setenv("TARA_TELEMETRY__RETENTION_DAYS", "10")
    _seed(SqliteInteractionLog(db), [40, 31, 20, 5, 0])
    assert purge("30d") == 0
    assert "purged 2 interactions" in capsys.readouterr().out
    assert _left(SqliteInteractionLog(db)) == ["r2", "r3", "r4"]
    assert purge() == 0  # retention_days = 10
    assert _left(SqliteInteractionLog(db)) == ["r3", "r4"]


@pytest.mark.parametrize("how", ["url", "setting"])
def test_purge_of_a_log_that_does_not_exist_fails_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    missing = tmp_path / "no-such-dir" / "interactions.db"
    if how == "url":
        monkeypatch.setenv("TARA_DATABASE_URL", f"sqlite:///{missing}")
    else:
        monkeypatch.setenv("TARA_TELEMETRY__SQLITE_PATH", str(missing))
    assert main(["log", "purge", "--older-than", "30d"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "does not exist" in err
    assert not missing.exists()
    assert not missing.parent.exists()


def test_purge_rejects_a_bad_age(capsys: pytest.CaptureFixture[str]) -> None:
    assert purge("soon") == 2
    assert "invalid age 'soon'" in capsys.readouterr().err


def test_purge_reports_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tara.serving import free_port

    monkeypatch.setenv("TARA_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    assert purge() == 1
    assert "cannot purge the interaction log" in capsys.readouterr().err


@pytest.mark.postgres
def test_purge_postgres(pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, schema = pg_schema
    monkeypatch.setenv("TARA_DATABASE_URL", dsn)
    monkeypatch.setenv("TARA_TELEMETRY__PG_SCHEMA", schema)
    _seed(PostgresInteractionLog(dsn, schema=schema), [3, 2, 1])
    assert purge("36h") == 0
    assert _left(PostgresInteractionLog(dsn, schema=schema)) == ["r2"]


def test_tara_log_purge_is_wired_into_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "ix.db"
    monkeypatch.setenv("TARA_TELEMETRY__SQLITE_PATH", str(db))
    _seed(SqliteInteractionLog(db), [3, 1])
    assert main(["log", "purge", "--older-than", "2d"]) == 0
    assert "purged 1 interactions" in capsys.readouterr().out
    assert _left(SqliteInteractionLog(db)) == ["r1"]
