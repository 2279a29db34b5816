"""``src/tara`` has no import cycles: dependencies flow one way (DESIGN.md, "Layout")."""

from __future__ import annotations

from pathlib import Path

import tara
from import_graph import cycles, describe, graph


def test_src_tara_has_no_import_cycles() -> None:
    g = graph(Path(tara.__file__).parent, "tara")
    found = cycles(g)
    assert not found, "import cycles:\n" + "\n".join(describe(c, g) for c in found)


def test_a_cycle_is_found_through_function_level_and_type_only_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import thing\n    return thing\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\nthing = 1\n"
    )
    (pkg / "d.py").write_text("import pkg.a\n")  # depends on the cycle, is not part of it
    g = graph(pkg, "pkg")
    assert g["pkg.a"] == {"pkg.sub.b": 1}
    assert g["pkg.sub.b"] == {"pkg.c": 2}
    found = cycles(g)
    assert found == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    assert describe(found[0], g) == (
        "pkg.a (line 1) -> pkg.sub.b (line 2) -> pkg.c (line 3) -> pkg.a"
    )


def test_importing_a_name_from_a_package_is_an_edge_to_the_package(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.impl import name\n")
    (pkg / "impl.py").write_text("name = 1\n")
    (pkg / "user.py").write_text("from pkg import impl, name\n")
    g = graph(pkg, "pkg")
    assert g["pkg.user"] == {"pkg.impl": 1, "pkg": 1}
    assert cycles(g) == []
