"""The configuration reference (``docs/configuration.md``), generated from the settings models.

Every leaf field becomes one row: its ``TARA_*`` variable, the config-file
key, the default and the field's docstring. ``tests/test_docs.py`` checks that
the page holds the current table, so a new setting cannot ship undocumented.
Run ``python -m tara.config_docs --write`` from the repository root to
regenerate it; without ``--write`` the table is printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo

from tara.settings import Settings


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def _render(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(dev value)" if value.get_secret_value() else "(empty)"
    if isinstance(value, list) and value and isinstance(value[0], SecretStr):
        return "(dev value)"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return json.dumps([v.model_dump(mode="json") for v in value], separators=(",", ":"))
    if isinstance(value, timedelta):
        return str(TypeAdapter(timedelta).dump_python(value, mode="json"))
    if isinstance(value, dict):
        return ", ".join(sorted(value)) or "{}"
    if value is None:
        return "unset"
    text = repr(value) if isinstance(value, str) else str(value)
    return text.replace("|", "\\|")


def rows(
    model: type[BaseModel] = Settings, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """``(variable, key, default, description)`` for every leaf setting."""
    for name, info in model.model_fields.items():
        sub = info.annotation
        here = (*path, name)
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from rows(sub, here)
            continue
        variable = "TARA_" + "__".join(p.upper() for p in here)
        description = " ".join((info.description or "").split()).replace("|", "\\|")
        description = description.replace("``", "`")
        yield variable, ".".join(here), _render(_default(info)), description


def markdown_table() -> str:
    """The whole configuration table in Markdown."""
    lines = ["| variable | config key | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{v}` | `{k}` | `{d}` | {m} |" for v, k, d, m in rows()]
    return "\n".join(lines)


START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"


PAGE = Path("docs") / "configuration.md"
"""The page holding the table, relative to the repository root."""


def with_table(page: str) -> str:
    """``page`` with the text between the config-table markers regenerated."""
    head, _, rest = page.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(with_table(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown_table())
