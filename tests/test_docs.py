"""The README documents every setting: its configuration table is the generated one."""

from __future__ import annotations

from pathlib import Path

from tara.config_docs import END, START, markdown_table, rows, with_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text
    assert END in text
    assert with_table(text) == text, "run: .venv/bin/python -m tara.config_docs --write"


def test_every_setting_has_a_description() -> None:
    missing = [variable for variable, _, _, meaning in rows() if not meaning]
    assert missing == []


def test_table_names_nested_variables_with_double_underscores() -> None:
    table = markdown_table()
    assert "`TARA_UPSTREAM__BASE_URL`" in table
    assert "`TARA_REDIS_URL`" in table
