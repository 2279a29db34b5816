"""``tara finetune evaluate`` against a real sandbox through the real ``openai`` SDK."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
from aiohttp import web
from test_finetune_samples import corpus, stream

from tara.cli import build_parser, main
from tara.finetune.config import FinetuneSettings
from tara.finetune.eval_cli import run_evaluation
from tara.finetune.eval_config import EvaluationSettings
from tara.finetune.eval_report import read_registry, render_markdown, report_json, write_report
from tara.finetune.evaluate import dataset_hash, evaluate
from tara.finetune.prepare import prepare
from tara.sandbox import Latency, ModelBehaviour, build_sandbox_app, running_sandbox, serving
from tara.sandbox.config import default_config as sandbox_defaults
from tara.sandbox.config import zero_latency
from tara.settings import Settings, UpstreamSettings

KEY = "sk-test"


def _settings(state_dir: Path, **evaluation: object) -> FinetuneSettings:
    fields: dict[str, object] = {
        "judge_model": "tara-judge",
        "state_dir": state_dir,
        "requests_per_second": 1000.0,
        "burst": 100,
        "max_retries": 6,
        # The sandbox answers at once: measured latency is the shared machine's noise,
        # which must not decide these tests (the latency check has its own table test).
        "gate": {"latency_slack_ms": 10_000.0},
        **evaluation,
    }
    return FinetuneSettings(
        min_interactions=30, evaluation=EvaluationSettings.model_validate(fields)
    )


@pytest.fixture
async def dataset(tmp_path: Path) -> Path:
    """A real prepared dataset (about 36 test examples in Hindi, Tamil and English)."""
    out = tmp_path / "dataset"
    items = corpus({("hi", "physics"): 120, ("ta", "math"): 120, ("en", "chemistry"): 120})
    await prepare(stream(items), FinetuneSettings(min_interactions=30), out)
    return out


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    """A zero-latency sandbox with the built-in models (candidate-bad keeps its errors)."""
    async with running_sandbox(seed=3) as url:
        yield url


def _app_settings(url: str, finetune: FinetuneSettings) -> Settings:
    return Settings(upstream=UpstreamSettings(base_url=url), finetune=finetune)


async def test_a_better_candidate_passes_and_is_registered(
    dataset: Path, sandbox_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    settings = _app_settings(sandbox_url, _settings(state))
    result = await run_evaluation(dataset, "tara-candidate-good", "tara-stable", settings, None)
    assert result.gate.outcome == "pass", result.gate
    assert result.candidate.accuracy > result.stable.accuracy
    assert result.candidate.satisfaction > result.stable.satisfaction
    assert result.candidate.judged == result.candidate.answered == result.candidate.samples
    assert result.candidate.language == 1.0
    assert result.candidate.tokens_per_answer > 0
    assert result.registered == state / "candidates.json"
    [entry] = read_registry(state)
    assert entry["model"] == "tara-candidate-good"
    assert entry["stable"] == "tara-stable"
    assert entry["dataset_sha256"] == dataset_hash(dataset)
    assert entry["metrics"]["accuracy"] == round(result.candidate.accuracy, 4)
    # Re-evaluating the same model on the same data replaces its entry.
    await run_evaluation(dataset, "tara-candidate-good", "tara-stable", settings, 12)
    assert len(read_registry(state)) == 1


async def test_a_worse_candidate_fails_and_is_not_registered(
    dataset: Path, sandbox_url: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    settings = _app_settings(sandbox_url, _settings(state))
    result = await run_evaluation(dataset, "tara-candidate-bad", "tara-stable", settings, None)
    assert result.gate.outcome == "fail"
    failed = {c.name for c in result.gate.checks if not c.passed}
    assert {"accuracy", "satisfaction"} <= failed
    assert result.candidate.accuracy < result.stable.accuracy - 0.1
    assert result.registered is None
    assert not (state / "candidates.json").exists()
    # The bad model's injected errors were retried by the SDK, not counted as answers.
    assert result.candidate.answered == result.candidate.samples


async def test_without_a_judge_accuracy_is_lexical(
    dataset: Path, sandbox_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path / "state", judge_model=None)
    async with openai.AsyncOpenAI(base_url=sandbox_url, api_key=KEY, max_retries=6) as client:
        result = await evaluate(
            dataset, "tara-candidate-good", "tara-stable", client, settings, limit=15
        )
    assert result.method == "lexical"
    assert result.candidate.samples == result.stable.samples == 15
    assert result.candidate.judged == 0
    # Sandbox answers share some words with the references, never all of them.
    assert 0.0 < result.candidate.accuracy < 1.0
    assert result.candidate.cultural == 1.0  # no lexicon hits, no judge to lower it


async def test_the_report_shows_every_metric_side_by_side(
    dataset: Path, sandbox_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path / "state")
    async with openai.AsyncOpenAI(base_url=sandbox_url, api_key=KEY, max_retries=6) as client:
        result = await evaluate(
            dataset, "tara-candidate-good", "tara-stable", client, settings, limit=20
        )
    report = report_json(result)
    json_path, md_path = write_report(report, dataset)
    assert json.loads(json_path.read_text())["candidate"]["samples"] == 20
    assert report["dataset"]["test_examples"] > 20
    assert {c["name"] for c in report["checks"]} == {
        "accuracy",
        "cultural",
        "lexicon_hits",
        "language",
        "latency_p95_ms",
        "satisfaction",
        "error_rate",
    }
    markdown = md_path.read_text()
    assert markdown == render_markdown(report)
    assert "| metric | tara-candidate-good (candidate) | tara-stable (stable) |" in markdown
    assert "| test examples sent | 20 | 20 |" in markdown
    for label in ("accuracy", "response time p95 (ms)", "tokens per answer", "satisfaction"):
        assert label in markdown
    assert "**PASS**" in markdown


async def test_requests_stay_within_the_concurrency_limit(dataset: Path, tmp_path: Path) -> None:
    paced = Latency(ttft_median_ms=15, ttft_sigma=0, token_delay_ms=0)
    config = zero_latency(sandbox_defaults())
    models = {**config.models, "paced": ModelBehaviour(quality=0.8, latency=paced)}
    app = build_sandbox_app(config.model_copy(update={"models": models}), seed=1)
    in_flight, peak = 0, 0

    @web.middleware
    async def count(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    app.middlewares.append(count)
    settings = _settings(tmp_path / "state", concurrency=3)
    async with serving(app) as port:
        url = f"http://127.0.0.1:{port}/v1"
        async with openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0) as client:
            result = await evaluate(dataset, "paced", "tara-stable", client, settings, limit=12)
    assert result.candidate.answered == 12
    assert 1 < peak <= 3


def test_the_cli_parses_evaluate() -> None:
    args = build_parser().parse_args(
        ["finetune", "evaluate", "--dataset", "d", "--candidate", "c", "--limit", "5", "--json"]
    )
    assert args._target == "tara.finetune.eval_cli:evaluate_command"
    assert (args.dataset, args.candidate, args.stable, args.limit, args.json) == (
        Path("d"),
        "c",
        None,
        5,
        True,
    )


def test_the_cli_rejects_a_missing_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["finetune", "evaluate", "--dataset", str(tmp_path), "--candidate", "x"])
    assert code == 2
    assert "test.jsonl" in capsys.readouterr().err


@pytest.fixture
def threaded_sandbox() -> Iterator[str]:
    """A sandbox in its own thread and loop, for CLI runs that call ``asyncio.run``."""
    urls: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with running_sandbox(seed=5) as url:
            urls.put(url)
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        yield urls.get(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)


def test_the_cli_evaluates_end_to_end(
    dataset: Path,
    threaded_sandbox: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TARA_UPSTREAM__BASE_URL", threaded_sandbox)
    monkeypatch.setenv("TARA_FINETUNE__EVALUATION__JUDGE_MODEL", "tara-judge")
    monkeypatch.setenv("TARA_FINETUNE__EVALUATION__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TARA_FINETUNE__EVALUATION__GATE__LATENCY_SLACK_MS", "10000")
    argv = ["finetune", "evaluate", "--dataset", str(dataset), "--candidate"]
    assert main([*argv, "tara-candidate-good", "--limit", "15", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outcome"] == "pass"
    assert report["stable"]["model"] == "tara-stable"  # the default track's stable model
    assert (dataset / "evaluations" / "tara-candidate-good.md").exists()
    assert main([*argv, "tara-candidate-bad", "--limit", "15"]) == 1
    assert "**FAIL**" in capsys.readouterr().out
    assert [e["model"] for e in read_registry(tmp_path / "state")] == ["tara-candidate-good"]
