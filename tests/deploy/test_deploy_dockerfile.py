"""The container image, checked without a Docker engine: the Dockerfile is parsed and its
promises (multi-stage, slim base, non-root, health check, ``tara serve``) are asserted; the
HEALTHCHECK command itself is run against a real server.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shlex
import sys
from dataclasses import dataclass

import pytest
import yaml
from deploy_contract import DEPLOY, REPO
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tara.cli import build_parser
from tara.serving import free_port, running_server

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction and the build stage (0-based) it belongs to."""

    keyword: str
    args: str
    stage: int


def parse(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining ``\\`` continuations, dropping comments."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions, stage = [], -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        stage += keyword.upper() == "FROM"
        instructions.append(Instruction(keyword.upper(), args.strip(), stage))
    return instructions


INSTRUCTIONS = parse(DOCKERFILE.read_text(encoding="utf-8"))
FINAL = max(i.stage for i in INSTRUCTIONS)


def final(keyword: str) -> list[Instruction]:
    """The final stage's instructions of one kind."""
    return [i for i in INSTRUCTIONS if i.stage == FINAL and i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails the test on shell form)."""
    assert args.startswith("["), f"not exec form: {args}"
    value: list[str] = json.loads(args)
    return value


def healthcheck_command() -> list[str]:
    [check] = final("HEALTHCHECK")
    options, _, command = check.args.partition("CMD ")
    assert "--timeout=" in options
    return exec_form(command)


def test_parser_joins_continuations_and_counts_stages() -> None:
    text = "# c\nFROM a AS one\nRUN x \\\n    && y\nFROM b\nUSER 1\n"
    assert parse(text) == [
        Instruction("FROM", "a AS one", 0),
        Instruction("RUN", "x && y", 0),
        Instruction("FROM", "b", 1),
        Instruction("USER", "1", 1),
    ]


def test_multi_stage_on_python_slim() -> None:
    froms = [shlex.split(i.args) for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(froms) >= 2
    assert all(f[0] == "python:3.11-slim" for f in froms)
    names = [f[2] for f in froms if len(f) == 3 and f[1].upper() == "AS"]
    copies_from = [
        arg.removeprefix("--from=")
        for i in final("COPY")
        for arg in i.args.split()
        if arg.startswith("--from=")
    ]
    assert copies_from
    assert set(copies_from) <= set(names[:-1])


def test_final_stage_copies_only_the_built_environment() -> None:
    assert all("--from=" in i.args for i in final("COPY"))
    assert not final("ADD")


def test_runs_as_the_non_root_user_kubernetes_expects() -> None:
    [user] = final("USER")
    uid = user.args.split(":")[0]
    assert uid not in {"0", "root"}
    k8s = yaml.safe_load((DEPLOY / "k8s/gateway-deployment.yaml").read_text())
    assert int(uid) == k8s["spec"]["template"]["spec"]["securityContext"]["runAsUser"]


def test_starts_tara_serve_on_the_exposed_port() -> None:
    [entrypoint] = final("ENTRYPOINT")
    [cmd] = final("CMD")
    argv = exec_form(entrypoint.args) + exec_form(cmd.args)
    assert argv[:2] == ["tara", "serve"]
    args = build_parser().parse_args(argv[1:])
    assert args.host == "0.0.0.0"
    [expose] = final("EXPOSE")
    assert expose.args == "8080"


def test_no_secret_or_tara_setting_is_baked_into_the_image() -> None:
    env = " ".join(i.args for i in INSTRUCTIONS if i.keyword in {"ENV", "ARG"})
    for word in ("KEY", "SECRET", "TOKEN", "PASSWORD", "TARA_"):
        assert word not in env.upper()


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negated
    return ignored


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = [
        src
        for i in INSTRUCTIONS
        if i.keyword == "COPY" and "--from=" not in i.args
        for src in i.args.split()[:-1]
    ]
    assert "src" in sources
    for src in sources:
        assert (REPO / src).exists(), src
        assert not _ignored(src, patterns), f"{src} is excluded by {DOCKERIGNORE.name}"
    assert _ignored(".venv", patterns)
    assert _ignored("src/tara/__pycache__/x.pyc", patterns)


def test_healthcheck_probes_healthz() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]


async def _run_healthcheck(port: int) -> int:
    _, code = healthcheck_command()[1:]
    env = {**os.environ, "TARA_SERVER__PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), timeout=30)


@pytest.mark.integration
async def test_healthcheck_passes_only_on_a_healthy_server() -> None:
    healthy = {"now": True}

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok", status_code=200 if healthy["now"] else 503)

    app = Starlette(routes=[Route("/healthz", healthz)])
    port = free_port()
    async with running_server(app, port=port):
        assert await _run_healthcheck(port) == 0
        healthy["now"] = False
        assert await _run_healthcheck(port) != 0
    assert await _run_healthcheck(port) != 0
