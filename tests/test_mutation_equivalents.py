"""The equivalent-mutant list in docs/mutation.md parses, and the parser refuses bad rows.

The mutation run itself (``scripts/mutation``) takes minutes and is not part of
the checks; this keeps the list it reads from rotting between runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mutation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "bench" / "mutation.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


MUTATION = _mutation()


def test_the_equivalents_list_parses_and_names_real_modules() -> None:
    found = MUTATION.equivalents()
    assert len(found) >= 10
    assert {e.module for e in found} <= set(MUTATION.MODULES)
    assert all(e.line and e.reason for e in found)
    for module in MUTATION.MODULES.values():
        assert (ROOT / module.source).is_file()
        assert any((ROOT / t).is_file() for t in module.tests)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("| nope | `tara.x.y__mutmut_1` | `x` | why |", "unknown module"),
        ("| decide | `tara.rollout.sse.x_f__mutmut_1` | `x` | why |", "is not a mutant of"),
        ("| decide | tara.rollout.decide.x_f__mutmut_1 | x | why |", "not a row"),
    ],
)
def test_a_bad_row_is_refused_with_its_line(tmp_path: Path, row: str, problem: str) -> None:
    page = tmp_path / "mutation.md"
    page.write_text(
        "# Mutation\n\n| module | mutant | line | why it cannot be killed |\n|---|---|---|---|\n"
        + row
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=f"mutation.md:5: .*{problem}"):
        MUTATION.equivalents(page)


def test_a_mutant_listed_twice_is_refused(tmp_path: Path) -> None:
    row = "| decide | `tara.rollout.decide.x_f__mutmut_1` | `x` | why |\n"
    page = tmp_path / "mutation.md"
    page.write_text("| module | mutant | line | why |\n|---|---|---|---|\n" + row * 2)
    with pytest.raises(ValueError, match="listed twice"):
        MUTATION.equivalents(page)


def test_the_changed_line_is_the_first_added_line_of_the_diff() -> None:
    diff = "--- a\n+++ b\n@@ -1 +1 @@\n-    x = 1\n+    x = 2  # note\n"
    assert MUTATION.changed_line(diff) == "x = 2  # note"
