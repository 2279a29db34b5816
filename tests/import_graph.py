"""The import graph of a package, read from its source with ``ast``, and the cycles in it.

Every ``import`` counts wherever it is written: at module level, inside a
function, under ``if TYPE_CHECKING:``. A function-level import hides a cycle
from Python but not from a reader, and a type-only import still ties the two
modules' designs together. ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path

Graph = dict[str, dict[str, int]]
"""``{module: {imported module: line of the first such import}}``."""


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module below ``root`` (the directory of ``package``), by dotted name."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _base(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    # In a package's __init__, level 1 is the package itself.
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join([*parts[:keep], *([node.module] if node.module else [])])


def imports(module: str, path: Path, known: Mapping[str, Path]) -> dict[str, int]:
    """The modules of ``known`` that ``module`` imports, each with the line it first does."""
    out: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in known and target != module:
            out.setdefault(target, line)

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node, path.name == "__init__.py")
            for alias in node.names:
                name = f"{base}.{alias.name}"
                add(name if name in known else base, node.lineno)
    return out


def graph(root: Path, package: str) -> Graph:
    """The import graph of ``package``, whose directory is ``root``."""
    known = modules(root, package)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(g: Graph) -> list[list[str]]:
    """One import cycle per strongly connected component, as ``[a, b, ..., a]``."""
    return [cycle_in(component, g) for component in components(g)]


def components(g: Graph) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(g):
        if start in index:
            continue
        work = [(start, iter(sorted(g[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(g[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def cycle_in(component: set[str], g: Graph) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(g[node]):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt in component and nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component has one


def describe(cycle: Iterable[str], g: Graph) -> str:
    """``a (line 12) -> b (line 3) -> a``: each step with the line of its import."""
    names = list(cycle)
    steps = [f"{a} (line {g[a][b]})" for a, b in itertools.pairwise(names)]
    return " -> ".join([*steps, names[-1]])
