"""Mutation testing of the pure core: which changed line would no test notice?

For each module of the pure core (the rollout decision, bucketing, the
sequential test, the SSE tap, the trigger rules, the dataset split) this runs
`mutmut <https://mutmut.readthedocs.io>`_ against only the tests of that
module, each module in its own workspace under ``mutants/<module>/`` (a copy
of ``src/``, ``tests/`` and a ``pyproject.toml`` whose ``[tool.mutmut]``
names the module and its tests), and prints a table: mutants, killed,
survived, equivalent and the score over the non-equivalent mutants.

Equivalent mutants — changes no test can notice because the behaviour does
not change — are listed in ``docs/mutation.md`` with the reason each cannot be
killed; only those listed there (by mutant name *and* changed line, so a
stale entry stops counting) are left out of the score. Hypothesis runs
derandomized, without deadlines or its example database, so a run is
repeatable.

Run: ``scripts/mutation`` (all modules) or ``scripts/mutation decide sse``.
Inspect a survivor: ``cd mutants/decide && ../../.venv/bin/mutmut show NAME``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutants"
EQUIVALENTS_PAGE = ROOT / "docs" / "mutation.md"
TARGET = 95.0
"""Percent of the non-equivalent mutants each module must kill."""


@dataclass(frozen=True, slots=True)
class Module:
    """A module to mutate and the tests that pin it."""

    source: str
    tests: tuple[str, ...]
    slow: tuple[str, ...] = ()
    """Tests left out of the run (Monte-Carlo checks of a level, seconds each, whose code the
    exact-value tests pin as well)."""


MODULES: dict[str, Module] = {
    "decide": Module(
        "src/tara/rollout/decide.py",
        ("tests/rollout/test_decide.py", "tests/rollout/test_decide_content.py"),
    ),
    "bucketing": Module("src/tara/rollout/bucketing.py", ("tests/rollout/test_bucketing.py",)),
    "sequential": Module(
        "src/tara/rollout/sequential.py",
        ("tests/rollout/test_sequential.py",),
        slow=(
            "tests/rollout/test_sequential.py::"
            "test_rate_tests_hold_their_level_under_a_look_after_every_request",
            "tests/rollout/test_sequential.py::test_rate_evidence_is_an_e_process_at_the_null",
            "tests/rollout/test_sequential.py::"
            "test_mean_mixture_holds_its_level_for_a_gaussian_mean_under_continuous_looks",
        ),
    ),
    "sse": Module(
        "src/tara/gateway/sse.py",
        (
            "tests/gateway/test_gateway_sse.py",
            "tests/gateway/test_gateway_sse_content.py",
            "tests/gateway/test_gateway_sse_bound.py",
        ),
    ),
    "rules": Module(
        "src/tara/triggers/rules.py",
        (
            "tests/triggers/test_triggers_rules.py",
            "tests/triggers/test_triggers_rules_content.py",
            "tests/triggers/test_triggers_rules_golden.py",
            "tests/triggers/test_triggers_rules_mutants.py",
        ),
    ),
    "split": Module(
        "src/tara/finetune/split.py",
        ("tests/finetune/test_finetune_split.py",),
    ),
}

KILLED = frozenset({"killed", "timeout", "caught by type check", "segfault"})
"""mutmut's outcomes that mean a test (or the interpreter) noticed the change."""


@dataclass(frozen=True, slots=True)
class Equivalent:
    """A mutant no test can kill: which, the line it changes to, and why."""

    module: str
    mutant: str
    line: str
    reason: str


_ROW = re.compile(r"^\|\s*(\w+)\s*\|\s*`([^`]+)`\s*\|\s*`(.*)`\s*\|\s*(.+?)\s*\|\s*$")


def equivalents(page: Path = EQUIVALENTS_PAGE) -> list[Equivalent]:
    """The equivalent mutants listed in the table of ``page`` (rows: module, mutant, line, why).

    Raises ``ValueError`` for a row naming an unknown module, a mutant of
    another module, an empty reason, or a mutant listed twice.
    """
    found: list[Equivalent] = []
    seen: set[str] = set()
    in_table = False
    for number, text in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if text.startswith("| module | mutant |"):
            in_table = True
            continue
        if not in_table or text.startswith("|---"):
            continue
        if not text.startswith("|"):
            in_table = False
            continue
        match = _ROW.match(text)
        if match is None:
            raise ValueError(f"{page.name}:{number}: not a row of module, mutant, line, why")
        module, mutant, line, reason = match.groups()
        if module not in MODULES:
            raise ValueError(f"{page.name}:{number}: unknown module {module!r}")
        dotted = MODULES[module].source.removeprefix("src/").removesuffix(".py").replace("/", ".")
        if not mutant.startswith(dotted + "."):
            raise ValueError(f"{page.name}:{number}: {mutant} is not a mutant of {dotted}")
        if mutant in seen:
            raise ValueError(f"{page.name}:{number}: {mutant} is listed twice")
        seen.add(mutant)
        found.append(Equivalent(module, mutant, line.replace("\\|", "|"), reason))
    return found


@dataclass(slots=True)
class Score:
    """One module's outcome."""

    module: str
    mutants: int
    killed: int
    survivors: list[str]
    equivalent: list[str]
    stale: list[str]
    seconds: float

    @property
    def score(self) -> float:
        """Percent of the non-equivalent mutants killed (100 when there are none)."""
        judged = self.mutants - len(self.equivalent)
        return 100.0 * self.killed / judged if judged else 100.0


def _pyproject(module: Module) -> str:
    """The project's pyproject.toml with a ``[tool.mutmut]`` for this module only."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    tests = ", ".join(f'"{t}"' for t in module.tests if (ROOT / t).exists())
    deselect = [arg for test in module.slow for arg in ("--deselect", test)]
    args = ", ".join(
        f'"{a}"' for a in ["-p", "no:cacheprovider", "-p", "mutation_plugin", *deselect]
    )
    return (
        text
        + "\n[tool.mutmut]\n"
        + 'source_paths = ["src/"]\n'
        + f'only_mutate = ["{module.source}"]\n'
        + f"pytest_add_cli_args_test_selection = [{tests}]\n"
        + f"pytest_add_cli_args = [{args}]\n"
        + "use_git_change_detection = false\n"
        + 'also_copy = ["docs/"]\n'  # tests that read the manual
    )


def _workspace(name: str, module: Module) -> Path:
    """A fresh copy of the sources and tests with this module's mutmut settings."""
    where = WORK / name
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".hypothesis", "*.pyc")
    shutil.copytree(ROOT / "src", where / "src", ignore=skip)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=skip)
    shutil.copytree(ROOT / "docs", where / "docs", ignore=skip)
    (where / "pyproject.toml").write_text(_pyproject(module), encoding="utf-8")
    # pytest runs in mutants/ (mutmut's copy), which is on sys.path as the current directory.
    (where / "mutants").mkdir()
    (where / "mutants" / "mutation_plugin.py").write_text(PLUGIN, encoding="utf-8")
    return where


PLUGIN = """\
\"\"\"pytest plugin for mutation runs: repeatable Hypothesis, and no cache shared by tests.\"\"\"

import functools
import os
import sys

import pytest
from hypothesis import settings

settings.register_profile("mutation", derandomize=True, deadline=None, database=None)
settings.load_profile("mutation")


_cleared_for = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # While mutmut maps tests to functions ("stats"), before every test; else once per run
    # (every test of a run sees the same mutant).
    global _cleared_for
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if mutant != "stats" and mutant == _cleared_for:
        return
    _cleared_for = mutant
    for name, module in list(sys.modules.items()):
        if name.startswith("tara.") and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, functools._lru_cache_wrapper):
                    value.cache_clear()
"""
"""A pytest plugin (``-p mutation_plugin``) loaded in each workspace.

Without it a deadline missed on a busy machine, or an example saved by one
mutant and replayed for the next, would kill a mutant in one run and not in
the other; and a function behind an ``lru_cache`` (the sequential boundaries)
would run in the first test only, so mutmut would credit it to that test
alone, and a mutant of it would meet a cache filled by the unmutated code."""


def _mutmut(where: Path, *args: str, log: Path | None = None) -> str:
    command = ["nice", "-n", "15", sys.executable, "-m", "mutmut", *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if log is None:
        done = subprocess.run(
            command, cwd=where, capture_output=True, text=True, env=env, check=True
        )
        return done.stdout
    with log.open("w", encoding="utf-8") as out:
        subprocess.run(
            command, cwd=where, stdout=out, stderr=subprocess.STDOUT, env=env, check=True
        )
    return log.read_text(encoding="utf-8")


def changed_line(diff: str) -> str:
    """The first added line of a mutant's diff, stripped (what the mutant changed a line to)."""
    for text in diff.splitlines():
        if text.startswith("+") and not text.startswith("+++"):
            return text[1:].strip()
    return ""


def run_module(name: str, module: Module, listed: list[Equivalent], children: int) -> Score:
    """Mutate one module, run its tests against every mutant, and count."""
    start = time.monotonic()
    where = _workspace(name, module)
    _mutmut(where, "run", "--max-children", str(children), log=where / "run.log")
    statuses: dict[str, str] = {}
    for text in _mutmut(where, "results", "--all", "true").splitlines():
        mutant, _, status = text.strip().rpartition(": ")
        if mutant:
            statuses[mutant] = status
    survivors = sorted(m for m, s in statuses.items() if s not in KILLED)
    mine = {e.mutant: e for e in listed if e.module == name}
    equivalent, stale = [], []
    for mutant in survivors:
        entry = mine.get(mutant)
        if entry is None:
            continue
        line = changed_line(_mutmut(where, "show", mutant))
        (equivalent if line == entry.line else stale).append(mutant)
    # A listed mutant that a test now kills was not equivalent: the list is stale.
    stale += [m for m in mine if statuses.get(m) in KILLED or m not in statuses]
    return Score(
        name,
        len(statuses),
        len(statuses) - len(survivors),
        [m for m in survivors if m not in equivalent],
        equivalent,
        sorted(stale),
        time.monotonic() - start,
    )


def table(scores: list[Score]) -> str:
    """The per-module table, then each survivor and equivalent by name."""
    rows = [
        "| module | mutants | killed | survived | equivalent | score | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        rows.append(
            f"| {s.module} | {s.mutants} | {s.killed} | {len(s.survivors)} | "
            f"{len(s.equivalent)} | {s.score:.1f}% | {s.seconds:.0f} |"
        )
    for s in scores:
        rows += [f"{s.module}: survived {m}" for m in s.survivors]
        rows += [f"{s.module}: equivalent {m}" for m in s.equivalent]
        rows += [f"{s.module}: STALE entry in docs/mutation.md {m}" for m in s.stale]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the modules asked for (all by default); exit 1 if one scores under the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--children", type=int, default=2, help="mutants run at once")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    listed = equivalents()
    scores = []
    for name in args.modules or list(MODULES):
        scores.append(run_module(name, MODULES[name], listed, args.children))
        print(table(scores[-1:]).splitlines()[2], flush=True)
    print()
    print(table(scores))
    low = [s.module for s in scores if s.score < TARGET or s.stale]
    if low:
        print(f"\nunder {TARGET:.0f}% (or with stale equivalents): {', '.join(low)}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
