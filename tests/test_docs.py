"""The manual is true: links resolve, commands run, named files and modules exist.

Pages are ``README.md`` and ``docs/*.md``. Commands come from their shell
code blocks (parsed, never listed by hand): each ``tara …`` command runs
with ``--help`` appended through the installed ``tara`` entry point and must
exit 0, and every long option it uses must appear in that help; cheap,
read-only commands also run for real in an empty directory. Every failure
names the page and line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from docs_check import (
    Command,
    Page,
    Problem,
    check_links,
    check_paths,
    github_anchor,
    module_names,
    normalise,
    shell_commands,
    split_commands,
    unknown_options,
)
from tara.config_docs import END, PAGE, START, markdown_table, rows, with_table
from tara.telemetry.log_sqlite import SqliteInteractionLog

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
CHEAP = (("triggers", "check"), ("log", "purge"))
"""Commands that only read (or tidy) a local SQLite log: run for real, not just ``--help``."""

_HELP_RUNNER = """
import contextlib, io, json, sys
from importlib.metadata import entry_points
(main,) = [ep.load() for ep in entry_points(group="console_scripts", name="tara")]
results = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*argv, "--help"])
            code = f"returned {code!r} without exiting: --help did not stop it"
        except SystemExit as exc:
            code = exc.code or 0
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""
"""Runs every ``tara … --help`` in one interpreter, through the console script's entry point."""


def _pages() -> dict[Path, Page]:
    return {path: Page.read(path) for path in PAGES}


def _report(problems: list[Problem]) -> str:
    return "\n".join(p.where(ROOT) for p in problems)


def _clean_env() -> dict[str, str]:
    """The environment without ``TARA_*``, so the defaults the docs describe apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TARA_")}


def _tara_commands() -> tuple[dict[tuple[str, ...], list[Command]], list[Problem]]:
    by_argv: dict[tuple[str, ...], list[Command]] = defaultdict(list)
    problems: list[Problem] = []
    for page in _pages().values():
        commands, bad = shell_commands(page)
        problems += bad
        for command in commands:
            if command.words[0] == "tara":
                by_argv[command.words[1:]].append(command)
    return by_argv, problems


def run_help(argvs: list[tuple[str, ...]]) -> list[dict[str, object]]:
    """``tara ARGV --help`` for each argv: exit code, stdout, stderr."""
    done = subprocess.run(
        [sys.executable, "-c", _HELP_RUNNER],
        input=json.dumps([list(a) for a in argvs]),
        capture_output=True,
        text=True,
        timeout=90,
        env=_clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, object]] = json.loads(done.stdout)
    return results


def help_problems(by_argv: dict[tuple[str, ...], list[Command]]) -> list[Problem]:
    """Commands whose ``--help`` fails, or that use an option their help does not list."""
    argvs = sorted(by_argv)
    problems = []
    for argv, result in zip(argvs, run_help(argvs), strict=True):
        shown = "tara " + " ".join(argv)
        if result["code"] != 0:
            message = f"`{shown} --help` exited {result['code']}: {str(result['err']).strip()}"
            problems += [Problem(c.page, c.line, message) for c in by_argv[argv]]
            continue
        for option in unknown_options(argv, str(result["out"])):
            message = f"`{shown}`: {option} is not an option of this command"
            problems += [Problem(c.page, c.line, message) for c in by_argv[argv]]
    return problems


# -- the pages ---------------------------------------------------------------------------


def test_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_every_relative_link_and_anchor_resolves() -> None:
    pages = _pages()
    problems = [p for page in pages.values() for p in check_links(page, pages, ROOT)]
    assert not problems, "broken links:\n" + _report(problems)


def test_every_tara_command_in_a_shell_block_runs_with_help() -> None:
    by_argv, problems = _tara_commands()
    assert len(by_argv) >= 20, "the pages should show the CLI; did the parser lose them?"
    problems += help_problems(by_argv)
    assert not problems, "commands in the docs that do not run:\n" + _report(problems)


def test_cheap_commands_in_the_docs_really_run(tmp_path: Path) -> None:
    by_argv, _ = _tara_commands()
    cheap = sorted(argv for argv in by_argv if argv[:2] in CHEAP)
    assert cheap, "the docs should show `tara triggers check`"
    # The log a gateway would have made where these run (purge never creates one).
    log = SqliteInteractionLog(tmp_path / "tara-data" / "interactions.db")

    async def make_log() -> None:
        await log.migrate()
        await log.aclose()

    asyncio.run(make_log())
    problems = []
    for argv in cheap:
        done = subprocess.run(
            [sys.executable, "-m", "tara", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=_clean_env(),
            check=False,
        )
        if done.returncode != 0:
            message = f"`tara {' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}"
            problems += [Problem(c.page, c.line, message) for c in by_argv[argv]]
    assert not problems, "cheap commands that fail:\n" + _report(problems)


def test_every_mentioned_repository_path_exists() -> None:
    problems = [p for page in _pages().values() for p in check_paths(page, ROOT)]
    assert not problems, "paths named in the docs that do not exist:\n" + _report(problems)


def test_every_named_tara_module_exists() -> None:
    problems = [
        Problem(page.path, line, f"module {name} does not exist")
        for page in _pages().values()
        for line, name in module_names(page)
        if importlib.util.find_spec(name) is None
    ]
    assert not problems, "modules named in the docs that do not exist:\n" + _report(problems)


def test_python_m_commands_name_real_modules() -> None:
    problems = []
    for page in _pages().values():
        commands, _ = shell_commands(page)
        for c in commands:
            module = c.words[2] if c.words[:2] in (("python", "-m"), ("python3", "-m")) else None
            if module and importlib.util.find_spec(module) is None:
                problems.append(Problem(c.page, c.line, f"no module {module}"))
    assert not problems, _report(problems)


# -- the configuration reference ---------------------------------------------------------


def test_configuration_page_table_is_current() -> None:
    text = (ROOT / PAGE).read_text(encoding="utf-8")
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


# -- the checks themselves can fail ------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Deploy", "deploy"),
        ("Feedback: `POST /v1/feedback`", "feedback-post-v1feedback"),
        ("Train: `tara finetune start`, `cancel`", "train-tara-finetune-start-cancel"),
        ("Shared state: memory or Redis", "shared-state-memory-or-redis"),
        ("Layout: why the code lives under `src/tara/`", "layout-why-the-code-lives-under-srctara"),
        ("Why the statistics stay honest", "why-the-statistics-stay-honest"),
        ("Promote, pause, resume, roll back", "promote-pause-resume-roll-back"),
        ("The **bold** [link](x.md) and snake_case", "the-bold-link-and-snake_case"),
    ],
)
def test_anchors_follow_github(heading: str, anchor: str) -> None:
    assert github_anchor(heading) == anchor


def test_broken_links_and_anchors_are_reported_with_their_line(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    page_path = tmp_path / "page.md"
    page_path.write_text(
        "# Page\n"
        "[fine](other.md#a-section) [web](https://example.com/x) [self](#page)\n"
        "[gone](missing.md)\n"
        "[no heading](other.md#nope)\n"
        "```sh\n[not a link](in-code.md)\n```\n"
        "`[not a link either](in-span.md)` ![picture](img/none.png)\n",
        encoding="utf-8",
    )
    page = Page.read(page_path)
    problems = [p.where(tmp_path) for p in check_links(page, {page_path: page}, tmp_path)]
    assert problems == [
        "page.md:3: link 'missing.md': no such file",
        "page.md:4: link 'other.md#nope': other.md has no heading #nope",
        "page.md:8: link 'img/none.png': no such file",
    ]


def test_commands_are_parsed_from_shell_blocks(tmp_path: Path) -> None:
    page_path = tmp_path / "page.md"
    page_path.write_text(
        "# Page\n"
        "```sh\n"
        "scripts/setup && .venv/bin/tara demo   # comment with tara words\n"
        "TARA_X=1 tara rollout start tara-tutor \\\n"
        "    --candidate 'ft:a b' | tee out.txt\n"
        "tara sandbox & .venv/bin/python -m tara serve > log.txt\n"
        "curl http://host/#frag\n"
        "```\n"
        "```\n"
        "tara demo\n"
        "```\n"
        "```python\nimport tara\n```\n",
        encoding="utf-8",
    )
    commands, problems = shell_commands(Page.read(page_path))
    assert [(c.line, c.words) for c in commands] == [
        (3, ("scripts/setup",)),
        (3, ("tara", "demo")),
        (4, ("tara", "rollout", "start", "tara-tutor", "--candidate", "ft:a b")),
        (4, ("tee", "out.txt")),
        (6, ("tara", "sandbox")),
        (6, ("tara", "serve")),
        (7, ("curl", "http://host/#frag")),
    ]
    assert [p.where(tmp_path) for p in problems] == [
        "page.md:10: command in a code block without a language: use sh"
    ]


def test_unparsable_shell_lines_are_reported(tmp_path: Path) -> None:
    page_path = tmp_path / "page.md"
    page_path.write_text("# Page\n```sh\ntara demo --report 'open\n```\n", encoding="utf-8")
    _, problems = shell_commands(Page.read(page_path))
    assert [p.line for p in problems] == [3]
    assert "does not parse" in problems[0].message


def test_normalise_and_split_keep_what_a_shell_would_run() -> None:
    assert normalise(["A=1", "B=2", ".venv/bin/tara", "x"]) == ["tara", "x"]
    assert normalise(["python", "-m", "tara", "demo"]) == ["tara", "demo"]
    assert split_commands("(cd deploy/k8s && kustomize edit)") == [
        ["cd", "deploy/k8s"],
        ["kustomize", "edit"],
    ]


def test_a_wrong_command_or_option_fails_the_help_check(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    by_argv = {
        ("triggers", "check", "--json"): [Command(page, 1, ("tara",))],
        ("triggers", "check", "--jsn"): [Command(page, 2, ("tara",))],
        ("trigger", "check"): [Command(page, 3, ("tara",))],
        ("simulate", "--runs", "many"): [Command(page, 4, ("tara",))],
    }
    problems = [p.where(tmp_path) for p in help_problems(by_argv)]
    assert len(problems) == 3, problems
    assert problems[0].startswith("page.md:4: `tara simulate --runs many --help` exited 2")
    assert problems[1].startswith("page.md:3: `tara trigger check --help` exited 2")
    assert problems[2] == (
        "page.md:2: `tara triggers check --jsn`: --jsn is not an option of this command"
    )


def test_missing_paths_are_reported(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "check").write_text("", encoding="utf-8")
    (tmp_path / "deploy" / "rules").mkdir(parents=True)
    (tmp_path / "deploy" / "rules" / "alerts.yml").write_text("", encoding="utf-8")
    page_path = tmp_path / "page.md"
    page_path.write_text(
        "# Page\nRun `scripts/check`, then scripts/nope.\n"
        "```sh\nkubectl rollout restart deploy/tara-gateway\n```\n"
        "Rules: `deploy/rules/{alerts,recording}.yml`, `deploy/rules/*.yml`.\n",
        encoding="utf-8",
    )
    problems = [p.where(tmp_path) for p in check_paths(Page.read(page_path), tmp_path)]
    assert problems == [
        "page.md:2: scripts/nope does not exist",
        "page.md:6: deploy/rules/recording.yml does not exist",
    ]
