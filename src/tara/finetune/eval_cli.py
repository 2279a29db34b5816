"""``tara finetune evaluate``: the offline gate between a fine-tuning job and a rollout.

Exit codes: 0 the candidate passed (and is registered), 1 it failed or
the evaluation was inconclusive, 2 the dataset or settings are unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import openai
import orjson

from tara.finetune.eval_report import register_candidate, render_markdown, report_json, write_report
from tara.finetune.evaluate import DatasetError, EvaluationResult, evaluate
from tara.settings import Settings


def stable_model(args: argparse.Namespace, settings: Settings) -> str | None:
    """``--stable``, else ``finetune.evaluation.stable_model``, else the first track's stable."""
    if args.stable:
        return str(args.stable)
    if settings.finetune.evaluation.stable_model:
        return settings.finetune.evaluation.stable_model
    for track in settings.tracks.values():
        return track.stable_model
    return None


async def run_evaluation(
    dataset: Path,
    candidate: str,
    stable: str,
    settings: Settings,
    limit: int | None,
    *,
    register: bool = True,
) -> EvaluationResult:
    """Evaluate through ``settings.upstream`` with the ``openai`` SDK; register a winner
    (unless ``register`` is false: the fine-tuning loop keeps its verdicts on its runs)."""
    ev = settings.finetune.evaluation
    client = openai.AsyncOpenAI(
        base_url=settings.upstream.base_url,
        api_key=settings.upstream.api_key.get_secret_value(),
        max_retries=ev.max_retries,
        timeout=ev.request_timeout,
    )
    try:
        result = await evaluate(dataset, candidate, stable, client, settings.finetune, limit=limit)
    finally:
        await client.close()
    if register and result.gate.passed:
        result.registered = await asyncio.to_thread(register_candidate, result, ev.state_dir)
    return result


def evaluate_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the evaluation, write the reports, print a summary (or JSON with ``--json``)."""
    stable = stable_model(args, settings)
    if stable is None:
        print("tara finetune evaluate: no stable model (use --stable)", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(
            run_evaluation(args.dataset, args.candidate, stable, settings, args.limit)
        )
    except DatasetError as exc:
        print(f"tara finetune evaluate: {exc}", file=sys.stderr)
        return 2
    report = report_json(result)
    json_path, md_path = write_report(report, args.dataset)
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_markdown(report))
        print(f"\nReports: {json_path}, {md_path}")
    return 0 if result.gate.passed else 1
