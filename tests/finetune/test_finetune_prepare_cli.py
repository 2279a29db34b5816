"""``tara finetune prepare`` from a JSONL export and from the real (SQLite) interaction log."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import orjson
import pytest
from test_finetune_samples import corpus

from tara.cli import main
from tara.finetune.prepare_cli import parse_time
from tara.telemetry.interactions import Interaction
from tara.telemetry.log_sqlite import SqliteInteractionLog


def _export(path: Path, items: list[Interaction]) -> Path:
    with path.open("wb") as f:
        for ix in items:
            f.write(orjson.dumps(dataclasses.asdict(ix) | {"exported_by": "test"}) + b"\n")
        f.write(b"\n")
    return path


def _manifest(out: Path) -> dict[str, object]:
    data = json.loads((out / "manifest.json").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def test_prepare_from_a_jsonl_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = corpus({("hi", "math"): 30, ("ta", "chemistry"): 12})
    export = _export(tmp_path / "export.jsonl", items)
    out = tmp_path / "dataset"
    argv = ["finetune", "prepare", "--from-jsonl", str(export), "--output", str(out)]
    code = main([*argv, "--min-interactions", "20", "--seed", "3", "--min-rating", "5"])
    assert code == 0
    manifest = _manifest(out)
    assert manifest["seed"] == 3
    assert manifest["filter"] == {
        "min_rating": 5,
        "min_interactions": 20,
        "since": None,
        "until": None,
        "track": None,
        "segment": None,
    }
    statuses = {(c["language"], c["subject"]): c["status"] for c in manifest["combinations"]}  # type: ignore[union-attr]
    assert statuses == {("hi", "math"): "included", ("ta", "chemistry"): "below_min_interactions"}
    assert "wrote train" in capsys.readouterr().out


def test_prepare_from_the_interaction_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "log.db"
    items = corpus({("en", "physics"): 25})
    old = dataclasses.replace(items[0], request_id="old", created_at=1_600_000_000.0)

    async def fill() -> None:
        log = SqliteInteractionLog(db)
        try:
            await log.migrate()
            await log.write_batch([*items, old])
        finally:
            await log.aclose()

    asyncio.run(fill())
    monkeypatch.setenv("TARA_DATABASE_URL", f"sqlite:///{db}")
    out = tmp_path / "dataset"
    argv = ["finetune", "prepare", "--output", str(out), "--min-interactions", "10"]
    assert main([*argv, "--since", "2023-01-01", "--track", "tara-tutor"]) == 0
    manifest = _manifest(out)
    assert manifest["totals"]["read"] == 25  # type: ignore[index]
    assert manifest["totals"]["kept"] == 25  # type: ignore[index]


def test_bad_arguments_and_unreadable_exports(tmp_path: Path) -> None:
    out = str(tmp_path / "o")
    assert main(["finetune", "prepare", "--since", "next tuesday", "--output", out]) == 2
    assert main(["finetune", "prepare", "--min-rating", "9", "--output", out]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"request_id": "x"}\n', encoding="utf-8")
    assert main(["finetune", "prepare", "--from-jsonl", str(bad), "--output", out]) == 1
    bad.write_text("not json\n", encoding="utf-8")
    assert main(["finetune", "prepare", "--from-jsonl", str(bad), "--output", out]) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1717200000", 1717200000.0),
        ("2024-06-01", 1717200000.0),
        ("2024-06-01T05:30:00+05:30", 1717200000.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text) == expected


def test_finetune_settings_come_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tara.settings import ConfigError, load_settings

    cfg = tmp_path / "tara.toml"
    cfg.write_text(
        "[finetune]\nmin_interactions = 500\n[finetune.split]\nseed = 9\n"
        '[finetune.prompts.subjects]\nbiology = "You explain living things."\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("TARA_FINETUNE__VALIDATION__PRIVACY", "drop")
    settings = load_settings(cfg)
    assert settings.finetune.min_interactions == 500
    assert settings.finetune.split.seed == 9
    assert settings.finetune.validation.privacy == "drop"
    assert settings.finetune.prompts.subjects == {"biology": "You explain living things."}
    cfg.write_text("[finetune.split]\ntrain = 0.9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="add up to 1"):
        load_settings(cfg)


def test_prepare_prints_the_manifest_per_combination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_finetune_samples import MATH, REFUSALS, interaction

    items = corpus({("hi", "math"): 30, ("en", "physics"): 20})
    items += [
        interaction("refused", language="hi", subject="math", answer=REFUSALS["hi"]),
        interaction("phone", language="hi", subject="math", answer=MATH["hi"] + " 9876543210"),
    ]
    export = _export(tmp_path / "export.jsonl", items)
    argv = ["finetune", "prepare", "--from-jsonl", str(export), "--min-interactions", "10"]
    assert main([*argv, "--output", str(tmp_path / "a")]) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("language"))
    assert header.split() == [
        "language",
        "subject",
        "extracted",
        "train",
        "validation",
        "test",
        "status",
        "exact",
        "dropped:",
        "refusal",
        "redacted:",
        "phone",
    ]
    rows = {
        tuple(line.split()[:2]): line.split()[2:] for line in table if line[:3] in ("hi ", "en ")
    }
    assert rows[("hi", "math")] == ["32", "25", "3", "3", "included", "yes", "1", "1"]
    assert rows[("en", "physics")] == ["20", "16", "2", "2", "included", "yes", "0", "0"]
    assert main([*argv, "--output", str(tmp_path / "b"), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    combo = next(c for c in manifest["combinations"] if c["language"] == "hi")
    assert combo["written"] == {"train": 25, "validation": 3, "test": 3}
    assert combo["dropped"] == {"refusal": 1}
    assert combo["redactions"] == {"phone": 1}
    assert combo["split"] == {
        "quotas": {"train": 25, "validation": 3, "test": 3},
        "exact": True,
        "clusters": 31,
        "largest_cluster": 1,
    }
