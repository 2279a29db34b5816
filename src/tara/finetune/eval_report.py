"""The evaluation's report (JSON and Markdown) and the registry of candidates cleared for rollout.

The report puts every metric of the two models side by side with the
sample sizes and the gate's checks. The registry, ``candidates.json`` in
``evaluation.state_dir``, lists each candidate that passed — model id,
dataset hash, metrics, time — newest last; re-evaluating the same model on
the same dataset replaces its entry. Files are written under a temporary
name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import orjson

from tara.atomic_files import write_atomically
from tara.finetune.evaluate import EvaluationResult
from tara.finetune.scoring import SATISFACTION_WEIGHTS

REGISTRY_FILE = "candidates.json"

_ROWS: tuple[tuple[str, str], ...] = (
    ("samples", "test examples sent"),
    ("answered", "answered"),
    ("error_rate", "error rate"),
    ("accuracy", "accuracy (0–1)"),
    ("cultural", "cultural appropriateness (0–1)"),
    ("lexicon_hits", "cultural lexicon hits"),
    ("language", "language quality (0–1)"),
    ("latency_p50_ms", "response time p50 (ms)"),
    ("latency_p95_ms", "response time p95 (ms)"),
    ("tokens_per_answer", "tokens per answer"),
    ("satisfaction", "predicted satisfaction (1–5)"),
    ("judged", "answers graded by the judge"),
)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def report_json(result: EvaluationResult) -> dict[str, Any]:
    """The whole evaluation as a JSON-ready dict."""
    return {
        "outcome": result.gate.outcome,
        "reason": result.gate.reason,
        "candidate": result.candidate.as_json(),
        "stable": result.stable.as_json(),
        "checks": [
            {
                "name": c.name,
                "rule": c.rule,
                "candidate": round(c.candidate, 4),
                "stable": round(c.stable, 4),
                "bound": round(c.bound, 4),
                "passed": c.passed,
            }
            for c in result.gate.checks
        ],
        "method": result.method,
        "dataset": {
            "dir": str(result.dataset_dir),
            "sha256": result.dataset_hash,
            "test_examples": result.test_examples,
        },
        "errors": {m: dict(c) for m, c in sorted(result.errors.items())},
        "judge_fallbacks": dict(sorted(result.judge_fallbacks.items())),
        "satisfaction_weights": SATISFACTION_WEIGHTS,
        "started_at": _iso(result.started),
        "finished_at": _iso(result.finished),
        "duration_s": round(result.finished - result.started, 3),
        "registered": str(result.registered) if result.registered else None,
    }


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_markdown(report: dict[str, Any]) -> str:
    """A reader's version of :func:`report_json`'s dict."""
    cand, stab = report["candidate"], report["stable"]
    outcome = str(report["outcome"]).upper()
    out = [
        f"# Evaluation: {cand['model']} vs {stab['model']}",
        "",
        f"**{outcome}** — {report['reason']}.",
        "",
        f"Dataset `{report['dataset']['dir']}` (sha256 {report['dataset']['sha256'][:16]}…): "
        f"{cand['samples']} of {report['dataset']['test_examples']} test examples; "
        f"scored by {report['method']}; {report['started_at']}, {report['duration_s']} s.",
        "",
        f"| metric | {cand['model']} (candidate) | {stab['model']} (stable) |",
        "|---|---|---|",
    ]
    out += [f"| {label} | {_cell(cand[key])} | {_cell(stab[key])} |" for key, label in _ROWS]
    out += ["", "## Gate", "", "| check | rule | candidate | stable | bound | result |"]
    out.append("|---|---|---|---|---|---|")
    out += [
        f"| {c['name']} | {c['rule']} | {_cell(c['candidate'])} | {_cell(c['stable'])} "
        f"| {_cell(c['bound'])} | {'pass' if c['passed'] else '**fail**'} |"
        for c in report["checks"]
    ]
    if report["errors"]:
        out += ["", "Failed requests: "]
        out += [f"- {m}: {errs}" for m, errs in report["errors"].items()]
    if report["judge_fallbacks"]:
        out += ["", f"Judge replies that could not be read: {report['judge_fallbacks']}."]
    w = report["satisfaction_weights"]
    out += [
        "",
        f"Predicted satisfaction = 1 + 4 × ({w['accuracy']}·accuracy + {w['cultural']}·cultural "
        f"+ {w['language']}·language) − slowness penalty; a failed request counts as 1.",
    ]
    if report["registered"]:
        out += ["", f"Registered for rollout in `{report['registered']}`."]
    return "\n".join(out) + "\n"


def report_paths(dataset_dir: Path, candidate: str) -> tuple[Path, Path]:
    """Where the JSON and Markdown reports of ``candidate`` go (model ids made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", candidate).strip("_") or "candidate"
    base = dataset_dir / "evaluations" / safe
    return base.with_suffix(".json"), base.with_suffix(".md")


def write_report(report: dict[str, Any], dataset_dir: Path) -> tuple[Path, Path]:
    """Write the JSON and Markdown reports; return their paths."""
    json_path, md_path = report_paths(dataset_dir, str(report["candidate"]["model"]))
    write_atomically(json_path, orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    write_atomically(md_path, render_markdown(report).encode())
    return json_path, md_path


def read_registry(state_dir: Path) -> list[dict[str, Any]]:
    """The registered candidates, oldest first (empty when there is no registry yet)."""
    try:
        data = orjson.loads((state_dir / REGISTRY_FILE).read_bytes())
    except FileNotFoundError:
        return []
    entries = data.get("candidates", []) if isinstance(data, dict) else []
    return [e for e in entries if isinstance(e, dict)]


def register_candidate(result: EvaluationResult, state_dir: Path) -> Path:
    """Add a passing candidate to the registry; return the registry's path."""
    if not result.gate.passed:
        msg = f"{result.candidate.model} did not pass the gate; it cannot be registered"
        raise ValueError(msg)
    entry = {
        "model": result.candidate.model,
        "stable": result.stable.model,
        "dataset_sha256": result.dataset_hash,
        "dataset_dir": str(result.dataset_dir),
        "evaluated_at": _iso(result.finished),
        "method": result.method,
        "metrics": result.candidate.as_json(),
        "stable_metrics": result.stable.as_json(),
    }
    kept = [
        e
        for e in read_registry(state_dir)
        if (e.get("model"), e.get("dataset_sha256")) != (entry["model"], entry["dataset_sha256"])
    ]
    path = state_dir / REGISTRY_FILE
    payload = {"candidates": [*kept, entry]}
    write_atomically(path, orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n")
    return path
