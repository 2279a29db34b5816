"""The README's configuration table, generated from the settings models.

Every leaf field becomes one row: its ``TARA_*`` variable, the config-file
key, the default and the field's docstring. ``tests/test_docs.py`` checks that
the README holds every variable, so a new setting cannot ship undocumented.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
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


def with_table(readme: str) -> str:
    """``readme`` with the text between the config-table markers regenerated."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:] == ["--write"]:
        path = Path("README.md")
        path.write_text(with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown_table())
