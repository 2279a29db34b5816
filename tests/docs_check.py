"""Reading the manual the way a newcomer uses it: links followed, commands typed.

Pure helpers for ``tests/test_docs.py``: they parse Markdown pages into
headings, links, code blocks and the shell commands in those blocks, and
report every problem as a :class:`Problem` naming the page and line. The
tests decide what to run; nothing here starts a process.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "zsh"})
"""Fenced blocks in these languages hold commands a reader would type."""

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPERATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;", "|&"})
_REDIRECTIONS = frozenset({">", ">>", "<", "<<", ">&", "<&", "&>", "<<<"})


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in a page that a reader would trip over."""

    page: Path
    line: int
    message: str

    def where(self, root: Path) -> str:
        """``docs/operations.md:42: message``, relative to ``root`` when inside it."""
        try:
            name = self.page.relative_to(root)
        except ValueError:
            name = self.page
        return f"{name}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class CodeBlock:
    """A fenced code block: its language and its lines with their line numbers."""

    language: str
    lines: tuple[tuple[int, str], ...]


@dataclass(slots=True)
class Page:
    """One Markdown file split into prose lines and fenced code blocks."""

    path: Path
    prose: list[tuple[int, str]] = field(default_factory=list)
    blocks: list[CodeBlock] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Page:
        """Parse ``path``; an unclosed fence swallows the rest, as on GitHub."""
        page = cls(path)
        fence: str | None = None
        language = ""
        body: list[tuple[int, str]] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = _FENCE.match(line)
            if fence is None and match:
                fence, language, body = match.group(2), match.group(3).lower(), []
            elif fence is not None and re.fullmatch(rf"\s*{fence}{fence[0]}*\s*", line):
                page.blocks.append(CodeBlock(language, tuple(body)))
                fence = None
            elif fence is not None:
                body.append((number, line))
            else:
                page.prose.append((number, line))
        if fence is not None:
            page.blocks.append(CodeBlock(language, tuple(body)))
        return page

    def headings(self) -> Iterator[tuple[int, str]]:
        """``(line, text)`` of every ATX heading outside code blocks."""
        for number, line in self.prose:
            match = _HEADING.match(line)
            if match:
                yield number, match.group(2)

    def anchors(self) -> set[str]:
        """The ``#fragment`` GitHub gives each heading (duplicates get ``-1``, ``-2``)."""
        seen: dict[str, int] = {}
        out: set[str] = set()
        for _, text in self.headings():
            slug = github_anchor(text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
        return out

    def links(self) -> Iterator[tuple[int, str]]:
        """``(line, target)`` of every inline link and image outside code."""
        for number, line in self.prose:
            for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
                yield number, match.group(1)

    def code_spans(self) -> Iterator[tuple[int, str]]:
        """``(line, text)`` of every inline code span in the prose."""
        for number, line in self.prose:
            for match in _CODE_SPAN.finditer(line):
                yield number, match.group(2).strip()

    def all_lines(self) -> Iterator[tuple[int, str]]:
        """Every line, prose and code, with its number."""
        yield from self.prose
        for block in self.blocks:
            yield from block.lines


def github_anchor(heading: str) -> str:
    """The fragment GitHub derives from a heading's text.

    The rendered text is lower-cased, everything but letters, digits, ``_``,
    ``-`` and spaces is removed, and spaces become hyphens.
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML renders as nothing here
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def check_links(page: Page, pages: dict[Path, Page], root: Path) -> list[Problem]:
    """Every relative link of ``page`` names an existing file (and heading, for ``#x``)."""
    problems = []
    for number, target in page.links():
        if _SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.path.parent / path_part).resolve() if path_part else page.path
        if not dest.is_relative_to(root):
            problems.append(Problem(page.path, number, f"link {target!r} leaves the repository"))
        elif not dest.exists():
            problems.append(Problem(page.path, number, f"link {target!r}: no such file"))
        elif anchor:
            linked = pages.get(dest) or (Page.read(dest) if dest.suffix == ".md" else None)
            if linked is None:
                message = f"link {target!r}: #{anchor} on a file that is not Markdown"
                problems.append(Problem(page.path, number, message))
            elif anchor not in linked.anchors():
                message = f"link {target!r}: {dest.name} has no heading #{anchor}"
                problems.append(Problem(page.path, number, message))
    return problems


def _logical_lines(block: CodeBlock) -> Iterator[tuple[int, str]]:
    """Lines of a shell block with ``\\`` continuations joined, numbered by their first line."""
    start, parts = 0, []
    for number, line in block.lines:
        if not parts:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def strip_comment(line: str) -> str:
    """``line`` without its shell comment: a ``#`` that starts a word, outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line: words split, operators and redirections gone."""
    lexer = shlex.shlex(strip_comment(line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
        elif token in _OPERATORS:
            commands.append([])
        elif token in _REDIRECTIONS:
            skip_next = True
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def normalise(words: list[str]) -> list[str]:
    """A command as the reader's shell would find it: no ``VAR=value`` prefix, no ``.venv/bin/``."""
    index = 0
    while index < len(words) and _ASSIGNMENT.match(words[index]):
        index += 1
    words = list(words[index:])
    if words and words[0].startswith(".venv/bin/"):
        words[0] = words[0].removeprefix(".venv/bin/")
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1:3] == ["-m", "tara"]:
        words = ["tara", *words[3:]]
    return words


@dataclass(frozen=True, slots=True)
class Command:
    """A command found in a shell block, where it was written."""

    page: Path
    line: int
    words: tuple[str, ...]


def shell_commands(page: Page) -> tuple[list[Command], list[Problem]]:
    """Every command in the page's shell blocks, normalised; lines that do not parse."""
    commands: list[Command] = []
    problems: list[Problem] = []
    for block in page.blocks:
        if block.language not in SHELL_LANGUAGES:
            problems.extend(_unlabelled_commands(page, block))
            continue
        for number, line in _logical_lines(block):
            try:
                parsed = split_commands(line)
            except ValueError as exc:
                problems.append(Problem(page.path, number, f"shell line does not parse: {exc}"))
                continue
            for words in parsed:
                if words := normalise(words):
                    commands.append(Command(page.path, number, tuple(words)))
    return commands, problems


def _unlabelled_commands(page: Page, block: CodeBlock) -> Iterator[Problem]:
    """A ``tara`` command in a block without a shell language would escape every check."""
    if block.language:
        return
    for number, line in block.lines:
        if line.startswith(("tara ", ".venv/bin/tara ", "$ ")):
            yield Problem(page.path, number, "command in a code block without a language: use sh")


def unknown_options(words: tuple[str, ...], help_text: str) -> list[str]:
    """Long options in ``words`` that the command's ``--help`` does not list."""
    out = []
    for word in words:
        if word.startswith("--") and len(word) > 2:
            option = word.split("=", 1)[0]
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text):
                out.append(option)
    return out


PATH_ROOTS = ("scripts", "bench", "tests", "src", "deploy", ".ci", "docs")
_ROOTS = "|".join(re.escape(r) for r in PATH_ROOTS)
_PATH = re.compile(rf"(?<![\w./-])((?:{_ROOTS})/[\w./*{{}},-]*)")


def _expand_braces(path: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", path)
    if match is None:
        return [path]
    head, tail = path[: match.start()], path[match.end() :]
    return [p for option in match.group(1).split(",") for p in _expand_braces(head + option + tail)]


def mentioned_paths(page: Page) -> Iterator[tuple[int, str]]:
    """``(line, path)`` of repository paths the page names, in prose and code alike.

    ``deploy/NAME`` without an extension is skipped: in ``kubectl`` commands
    it is a Deployment (``deploy/tara-gateway``), not a file.
    """
    for number, line in page.all_lines():
        for match in _PATH.finditer(line):
            path = match.group(1).rstrip(".,")
            rest = path.removeprefix("deploy/")
            if path.startswith("deploy/") and "/" not in rest and "." not in rest:
                continue
            yield number, path


def check_paths(page: Page, root: Path) -> list[Problem]:
    """Every repository path the page mentions exists (braces and globs expanded)."""
    problems = []
    for number, path in mentioned_paths(page):
        for each in _expand_braces(path):
            found = any(root.glob(each)) if "*" in each else (root / each).exists()
            if not found:
                problems.append(Problem(page.path, number, f"{each} does not exist"))
    return problems


_FILE_SUFFIXES = frozenset({"toml", "yaml", "yml", "json", "md", "py", "txt", "html", "db", "png"})


def module_names(page: Page) -> Iterator[tuple[int, str]]:
    """``(line, name)`` of every inline code span that is a dotted ``tara.…`` module name.

    Mutant names (``tara.rollout.decide.x_step__mutmut_16``, docs/mutation.md) are not.
    """
    for number, text in page.code_spans():
        dotted = re.fullmatch(r"tara(\.[a-z_][a-z0-9_]*)+", text)
        mutant = "__mutmut_" in text
        if dotted and not mutant and text.rsplit(".", 1)[1] not in _FILE_SUFFIXES:
            yield number, text
