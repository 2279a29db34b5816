"""``bench/table.py`` dates each results file by when it was measured, not by its mtime.

A fresh checkout gives every file the time of the checkout, so a table
printed there named that time for measurements made days before.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_table", BENCH / "table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROW = {"point": "p", "gateway": "1 ms", "bare": "", "goal": "< 5 ms", "holds": True}


def test_a_file_is_dated_by_its_rows_whatever_its_mtime(table: ModuleType, tmp_path: Path) -> None:
    table.write_results(tmp_path / "loop.json", [ROW, {**ROW, "holds": False}])
    rows = json.loads((tmp_path / "loop.json").read_text(encoding="utf-8"))
    measured = {r["measured"] for r in rows}
    assert len(measured) == 1
    os.utime(tmp_path / "loop.json", (0, 0))  # an mtime that says nothing
    stamp = measured.pop()
    shown = f"{stamp[:10]} {stamp[11:16]} UTC"
    out = table.render(tmp_path)
    assert f"loop.json {shown}" in out
    assert "1 of 2 points hold." in out


def test_a_file_without_dates_falls_back_to_its_mtime(table: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps([ROW]), encoding="utf-8")
    os.utime(tmp_path / "old.json", (1_796_000_000, 1_796_000_000))
    assert "old.json 2026-11-30 00:53 UTC" in table.render(tmp_path)
