"""End to end: students' rated answers become a fine-tuned model that is gated against stable.

Everything real: ``tara sandbox`` on a loopback port is both the chat
upstream and the fine-tuning API; the gateway serves in front of it with
memory state and its interaction log in a private SQLite file; students ask
Hindi, Tamil and English questions through the official ``openai`` SDK and
rate the answers on ``POST /v1/feedback``. After the gateway has shut down
(its lifespan flushes the log), the ``tara finetune`` CLI runs prepare →
start → status → evaluate from that log, each command in a worker thread
(it owns its event loop, as from a shell) while the sandbox keeps serving
from the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from tara.cli import main
from tara.finetune.eval_report import REGISTRY_FILE, read_registry, report_paths
from tara.gateway.server import gateway_from_settings
from tara.sandbox.config import FineTuningConfig, default_config, zero_latency
from tara.sandbox.server import running_sandbox
from tara.serving import running_server
from tara.settings import DEV_CLIENT_KEY, Settings

pytestmark = pytest.mark.integration

PER_COMBINATION = 40
"""Questions per language×subject. The split hashes the gateway's random request ids, so
it varies run to run; with 40 (a few lost as near duplicates) and 40/30/30 fractions the
chance that some split of some combination comes out empty is about 1e-5."""


def _questions() -> dict[tuple[str, str], list[str]]:
    """Distinct real questions per (language, subject), with the sandbox's subject keywords."""
    n = range(2, 2 + PER_COMBINATION)
    return {
        ("hi", "math"): [f"भिन्न {k}/{k + 3} को {k + 1}/{k + 5} में कैसे जोड़ें?" for k in n],
        ("ta", "physics"): [f"{k} கிலோ எடையுள்ள பொருளின் மீது செயல்படும் விசை என்ன?" for k in n],
        ("en", "chemistry"): [
            f"Why does an acid with pH {k % 6 + 1} react with {k} grams of chalk?" for k in n
        ],
    }


async def _tara(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out


async def _tara_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out = await _tara(capsys, *argv, "--json")
    return code, json.loads(out)


async def _ask_and_rate(gateway: str, questions: dict[tuple[str, str], list[str]]) -> list[str]:
    """Every question asked once through the SDK and rated 4 or 5; the request ids."""
    ids: list[str] = []
    async with (
        openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=DEV_CLIENT_KEY, max_retries=0) as sdk,
        httpx.AsyncClient(
            base_url=gateway, headers={"Authorization": f"Bearer {DEV_CLIENT_KEY}"}
        ) as http,
    ):
        for (language, subject), texts in questions.items():
            for number, text in enumerate(texts):
                raw = await sdk.chat.completions.with_raw_response.create(
                    model="tara-tutor",
                    messages=[{"role": "user", "content": text}],
                    extra_headers={
                        "X-Tara-User": f"student-{language}-{number}",
                        "X-Tara-Subject": subject,
                        "X-Tara-Language": language,
                    },
                )
                completion = raw.parse()
                assert completion.choices[0].message.content
                request_id = raw.headers["X-Tara-Request-Id"]
                rating = 4 + number % 2
                answer = await http.post(
                    "/v1/feedback", json={"request_id": request_id, "rating": rating}
                )
                assert answer.status_code == 200, answer.text
                ids.append(request_id)
    return ids


def _env(monkeypatch: pytest.MonkeyPatch, sandbox: str, log: Path, state: Path) -> None:
    for name, value in {
        "TARA_TELEMETRY__SQLITE_PATH": str(log),
        "TARA_UPSTREAM__BASE_URL": sandbox,
        "TARA_FINETUNE__BASE_URL": sandbox,
        "TARA_FINETUNE__API_KEY": "sk-sandbox",
        "TARA_FINETUNE__POLL_INTERVAL": "0.02",
        "TARA_FINETUNE__EVALUATION__STATE_DIR": str(state),
        "TARA_FINETUNE__EVALUATION__REQUESTS_PER_SECOND": "1000",
        "TARA_FINETUNE__EVALUATION__BURST": "100",
        "TARA_FINETUNE__SPLIT__TRAIN": "0.4",
        "TARA_FINETUNE__SPLIT__VALIDATION": "0.3",
        "TARA_FINETUNE__SPLIT__TEST": "0.3",
        # The sandbox's answer text does not depend on a model's quality, so lexical
        # scores make candidate against stable a coin flip; its judge grades by the
        # answering model's quality, which makes the gate's outcome deterministic.
        "TARA_FINETUNE__EVALUATION__JUDGE_MODEL": "tara-judge",
        # Both models answer at once on loopback: their p95s are scheduler noise.
        "TARA_FINETUNE__EVALUATION__GATE__LATENCY_SLACK_MS": "5000",
    }.items():
        monkeypatch.setenv(name, value)


async def test_prepare_start_status_evaluate_from_the_gateway_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tuning on ~50 examples earns a strong gain (about +0.2 quality over tara-stable's
    # 0.75), far beyond the judge's grading jitter: the candidate must pass.
    tuning = FineTuningConfig(training_seconds=0, max_quality_gain=0.25, half_gain_examples=5)
    config = zero_latency(default_config()).model_copy(update={"fine_tuning": tuning})
    questions = _questions()
    log, dataset, state = tmp_path / "interactions.db", tmp_path / "ds", tmp_path / "state"
    async with running_sandbox(config, seed=7) as sandbox:
        settings = Settings(
            state_backend="memory",
            upstream={"base_url": sandbox},
            telemetry={"sqlite_path": log, "flush_interval": 0.05},
        )
        gateway = gateway_from_settings(settings, registry=CollectorRegistry())
        async with running_server(gateway) as base:
            ids = await _ask_and_rate(base, questions)
        assert len(set(ids)) == len(ids) == 3 * PER_COMBINATION

        _env(monkeypatch, sandbox, log, state)
        await _prepare_start_status_evaluate(capsys, dataset, state, len(ids))


async def _prepare_start_status_evaluate(
    capsys: pytest.CaptureFixture[str], dataset: Path, state: Path, asked: int
) -> None:
    ds = str(dataset)
    code, out = await _tara(
        capsys, "finetune", "prepare", "--output", ds, "--min-interactions", "10"
    )
    assert code == 0, out
    manifest = json.loads((dataset / "manifest.json").read_text())
    totals = manifest["totals"]
    assert totals["read"] == totals["extracted"] == asked
    combos = {(c["language"], c["subject"]): c for c in manifest["combinations"]}
    assert set(combos) == set(_questions())
    for combo in combos.values():
        assert combo["status"] == "included"
        assert combo["extracted"] == PER_COMBINATION
        # The sandbox composes answers from a small phrase bank, so a few answers are
        # near duplicates of earlier ones; they must stay a few.
        assert set(combo["dropped"]) <= {"near_duplicate"}
        assert sum(combo["dropped"].values()) <= PER_COMBINATION // 5
        assert all(n > 0 for n in combo["written"].values())
    test_examples = manifest["files"]["test.jsonl"]["examples"]
    assert sum(f["examples"] for f in manifest["files"].values()) == totals["kept"]
    assert totals["kept"] == asked - manifest["rules"]["near_duplicate"]

    code, out = await _tara(capsys, "finetune", "start", ds)
    assert code == 0, out
    assert out.startswith("created job ftjob-")
    code, out = await _tara(capsys, "finetune", "status", ds, "--follow")
    assert code == 0, out
    assert "succeeded" in out
    code, status = await _tara_json(capsys, "finetune", "status", ds)
    assert code == 0
    job = status["job"]
    assert job["status"] == "succeeded"
    candidate = job["fine_tuned_model"]
    assert candidate.startswith("ft:")
    assert status["run"]["fine_tuned_model"] == candidate

    argv = ("finetune", "evaluate", "--dataset", ds, "--candidate", candidate)
    code, report = await _tara_json(capsys, *argv, "--stable", "tara-stable")
    assert report["method"] == "judge:tara-judge"
    assert report["dataset"]["test_examples"] == test_examples
    for side, model in (("candidate", candidate), ("stable", "tara-stable")):
        metrics = report[side]
        assert metrics["model"] == model
        assert metrics["samples"] == metrics["answered"] == metrics["judged"] == test_examples
        assert metrics["error_rate"] == 0
        # The dataset's system prompts name the language; the sandbox answers in it.
        assert metrics["language"] == 1.0
    assert report["candidate"]["accuracy"] > report["stable"]["accuracy"]
    assert report["errors"] == {}
    assert {c["name"]: c["passed"] for c in report["checks"]} == dict.fromkeys(
        (
            "accuracy",
            "cultural",
            "lexicon_hits",
            "language",
            "latency_p95_ms",
            "satisfaction",
            "error_rate",
        ),
        True,
    )
    assert (code, report["outcome"]) == (0, "pass")
    assert report["registered"] == str(state / REGISTRY_FILE)
    [entry] = read_registry(state)
    assert (entry["model"], entry["stable"]) == (candidate, "tara-stable")
    assert entry["dataset_sha256"] == report["dataset"]["sha256"]
    # The registered candidate joins its fine-tuning run by the same dataset hash.
    assert entry["dataset_sha256"] == status["run"]["dataset_hash"]
    json_path, md_path = report_paths(dataset, candidate)
    assert json.loads(json_path.read_text()) == report
    assert candidate in md_path.read_text()
