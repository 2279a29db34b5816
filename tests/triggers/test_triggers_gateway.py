"""The topic, knowledge-gap and language rules fire from what a real gateway logged.

``tara sandbox`` answers on a loopback port; a gateway serves in front of it
with memory state and a private SQLite log; students ask through HTTP with
their context headers (a topic named by ``X-Tara-Topic`` for some, derived
from the Hindi question for others) and rate the answers on
``POST /v1/feedback``. After the gateway has shut down (its lifespan flushes
the log), ``tara triggers check --json`` reads that log, as from a shell.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tara.cli import main
from tara.gateway.server import gateway_from_settings
from tara.sandbox.server import running_sandbox
from tara.serving import running_server
from tara.settings import DEV_CLIENT_KEY, Settings

pytestmark = pytest.mark.integration

STUDENT = itertools.count()


async def _ask(
    http: httpx.AsyncClient, question: str, rating: int, tags: list[str], **context: str
) -> str:
    """One question through the gateway, rated; its request id."""
    headers = {f"X-Tara-{name.title()}": value for name, value in context.items()}
    headers["X-Tara-User"] = f"student-{next(STUDENT)}"
    body = {"model": "tara-tutor", "messages": [{"role": "user", "content": question}]}
    answer = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["X-Tara-Request-Id"]
    rated = await http.post(
        "/v1/feedback", json={"request_id": request_id, "rating": rating, "tags": tags}
    )
    assert rated.status_code == 200, rated.text
    return request_id


async def _traffic(gateway: str) -> None:
    auth = {"Authorization": f"Bearer {DEV_CLIENT_KEY}"}
    async with httpx.AsyncClient(base_url=gateway, headers=auth, timeout=30) as http:
        hi_math = {"subject": "math", "language": "hi"}
        # Fractions, named by the app (in capitals: stored lower-case), rated well,
        # but 24 of 60 are the student asking again: a 40% retry rate on the topic.
        for n in range(60):
            retry = {"retry": "1"} if n % 5 < 2 else {}
            await _ask(
                http,
                f"{n + 2}/{n + 5} और 1/{n + 3} को कैसे जोड़ें?",
                5,
                [],
                topic="Fractions",
                grade="7",
                **hi_math,
                **retry,
            )
        # Quadratic equations, no topic named: derived (algebra); grade 10 rated badly.
        for n in range(40):
            question = f"द्विघात समीकरण x² - {n + 5}x + 6 = 0 को कैसे हल करें?"
            await _ask(http, question, 2, ["wrong"], grade="10", **hi_math)
        # English maths answers land in the wrong language, for 12 of 40 students.
        for n in range(40):
            tags = ["language"] if n < 12 else []
            await _ask(
                http, f"What is {n + 2} times {n + 9}?", 4, tags, subject="math", language="en"
            )
        # Physics: Tamil answers rated far below English ones.
        for n in range(40):
            await _ask(http, f"{n + 2} கிலோ பொருளின் மீது விசை என்ன?", 2 + n % 2, [],
                       subject="physics", language="ta")  # fmt: skip
            await _ask(http, f"What force acts on a {n + 2} kg mass?", 5, [],
                       subject="physics", language="en")  # fmt: skip


def _fired(report: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {
        ",".join(f"{k}={v}" for k, v in t["scope"].items()): t
        for t in report["triggers"]
        if t["trigger"] == name and t["fired"]
    }


async def test_new_rules_fire_from_a_gateway_filled_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "interactions.db"
    async with running_sandbox(seed=3) as sandbox:
        settings = Settings(
            state_backend="memory",
            upstream={"base_url": sandbox},
            telemetry={"sqlite_path": log, "flush_interval": 0.05},
        )
        gateway = gateway_from_settings(settings, registry=CollectorRegistry())
        async with running_server(gateway) as base:
            await _traffic(base)
    monkeypatch.setenv("TARA_TELEMETRY__SQLITE_PATH", str(log))
    monkeypatch.setenv("TARA_TRIGGERS__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TARA_DATABASE_URL", raising=False)
    at = str(time.time() + 60)
    code = await asyncio.to_thread(main, ["triggers", "check", "--json", "--at", at])
    assert code == 0
    report = json.loads(capsys.readouterr().out)

    retry = _fired(report, "topic_retry_rate")
    assert list(retry) == ["language=hi,subject=math,topic=fractions"]
    fractions = retry["language=hi,subject=math,topic=fractions"]
    assert (fractions["value"], fractions["sample"], fractions["min_sample"]) == (0.4, 60, 50)
    assert fractions["evidence"] == {"retries": 24, "requests": 60, "derived": 0}
    assert set(fractions["window"]) == {"start", "end"}

    gaps = _fired(report, "knowledge_gap")["language=hi,subject=math"]["evidence"]["gaps"]
    assert [{k: g[k] for k in g if k in ("grade", "topic", "ratings")} for g in gaps] == [
        {"topic": "algebra", "ratings": 40},  # derived from "द्विघात समीकरण"
        {"grade": "10", "ratings": 40},  # as bad: a tie keeps the cells' order
    ]
    assert list(_fired(report, "language_rating")) == ["language=ta,subject=physics"]
    assert list(_fired(report, "language_complaints")) == ["language=en,subject=math"]
    for name in ("topic_retry_rate", "knowledge_gap", "language_rating", "language_complaints"):
        for result in _fired(report, name).values():
            assert result["sample"] >= result["min_sample"], name
            assert result["window"]["end"] == float(at), name
