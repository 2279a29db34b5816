"""The build's manifest (JSON, for machines) and report (Markdown, for people).

The manifest records everything needed to reproduce and audit a dataset:
the settings and seed, the extraction filter, counts per combination, split
and rule, the redactions, and each file's SHA-256.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from tara.atomic_files import write_atomically
from tara.finetune.config import FinetuneSettings
from tara.finetune.dataset import WrittenFile
from tara.finetune.extract import EXTRACT_REASONS, ExtractFilter
from tara.finetune.split import SPLITS
from tara.finetune.stats import INCLUDED, CombinationStats
from tara.finetune.validate import RULES

FORMAT = "tara-finetune-dataset/1"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def build_manifest(
    *,
    settings: FinetuneSettings,
    where: ExtractFilter,
    read: int,
    extraction: Mapping[str, int],
    combinations: Iterable[CombinationStats],
    files: Mapping[str, WrittenFile],
    dedup: Mapping[str, int],
    started: float,
    finished: float,
) -> dict[str, Any]:
    """The manifest as a JSON-ready dict."""
    combos = list(combinations)
    rules: Counter[str] = Counter(dict.fromkeys(RULES, 0))
    redactions: Counter[str] = Counter()
    for c in combos:
        rules.update(c.dropped)
        redactions.update(c.redactions)
    return {
        "format": FORMAT,
        "created_at": _iso(finished),
        "duration_s": round(finished - started, 3),
        "seed": settings.split.seed,
        "filter": {
            "min_rating": where.min_rating,
            "min_interactions": settings.min_interactions,
            "since": where.since,
            "until": where.until,
            "track": where.track,
            "segment": where.segment,
        },
        "totals": {
            "read": read,
            "extracted": sum(c.extracted for c in combos),
            "kept": sum(sum(c.kept.values()) for c in combos),
            "written": {s: files[s].examples for s in SPLITS},
        },
        "extraction": {r: extraction.get(r, 0) for r in EXTRACT_REASONS},
        "rules": dict(rules),
        "redactions": dict(sorted(redactions.items())),
        "redacted_examples": sum(c.redacted_examples for c in combos),
        "combinations": [
            {
                "language": c.language,
                "subject": c.subject,
                "status": c.status,
                "extracted": c.extracted,
                "dropped": {r: c.dropped[r] for r in RULES if c.dropped[r]},
                "kept": dict(c.kept),
                "written": dict(c.written),
                "redacted_examples": c.redacted_examples,
                "redactions": dict(sorted(c.redactions.items())),
                "split": _split(c),
            }
            for c in combos
        ],
        "files": {
            f.name: {"examples": f.examples, "bytes": f.bytes, "sha256": f.sha256}
            for f in files.values()
        },
        "dedup": {
            "near_duplicate_threshold": settings.validation.near_duplicate_threshold,
            **dedup,
        },
        "settings": settings.model_dump(mode="json"),
    }


def _split(c: CombinationStats) -> dict[str, Any] | None:
    plan = c.plan
    if plan is None:
        return None
    return {
        "quotas": dict(zip(SPLITS, plan.quotas, strict=True)),
        "exact": plan.exact,
        "clusters": plan.clusters,
        "largest_cluster": plan.largest_cluster,
    }


def combination_rows(manifest: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the per-combination table (report and ``prepare``'s output)."""
    rules = [r for r in manifest["rules"] if manifest["rules"][r]]
    kinds = list(manifest["redactions"])
    header = ["language", "subject", "extracted", *SPLITS, "status", "exact"]
    header += [f"dropped: {r}" for r in rules] + [f"redacted: {k}" for k in kinds]
    rows = []
    for c in manifest["combinations"]:
        split = c.get("split") or {}
        rows.append(
            [
                c["language"],
                c["subject"],
                c["extracted"],
                *(c["written"][s] for s in SPLITS),
                c["status"].replace("_", " "),
                "yes" if split.get("exact") else "no",
                *(c["dropped"].get(r, 0) for r in rules),
                *(c["redactions"].get(k, 0) for k in kinds),
            ]
        )
    return header, rows


def _table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def render_report(manifest: Mapping[str, Any]) -> str:
    """The Markdown report of a build, from its manifest."""
    totals, filt = manifest["totals"], manifest["filter"]
    excluded = [c for c in manifest["combinations"] if c["status"] != INCLUDED]
    out = [
        "# Fine-tuning dataset",
        "",
        f"Built {manifest['created_at']} in {manifest['duration_s']} s, seed {manifest['seed']}.",
        f"Read {totals['read']} interactions; {totals['extracted']} rated ≥ "
        f"{filt['min_rating']} were extracted, {totals['kept']} passed validation, and "
        + ", ".join(f"{totals['written'][s]} went to {s}" for s in SPLITS)
        + ".",
        "",
        "## Combinations",
        "",
    ]
    out += _table(*combination_rows(manifest))
    out += [
        "",
        "Splits are exact per combination (largest-remainder shares of the kept examples; "
        "a student's repeated question stays in one split): *exact* says every split got "
        "its quota.",
    ]
    if excluded:
        out += ["", "Not (fully) in the dataset:", ""]
        out += [
            f"- {c['language']}×{c['subject']}: {c['status'].replace('_', ' ')} "
            f"({c['extracted']} extracted; its split would be "
            + ", ".join(f"{s} {c['kept'][s]}" for s in SPLITS)
            + f"; min_interactions is {filt['min_interactions']})"
            for c in excluded
        ]
    out += ["", "## Extraction", ""]
    out += _table(["step", "left out"], ([k, v] for k, v in manifest["extraction"].items()))
    out += ["", "## Validation rules (first rule broken)", ""]
    out += _table(["rule", "dropped"], ([k, v] for k, v in manifest["rules"].items()))
    out += [
        "",
        f"Personal data redacted in {manifest['redacted_examples']} kept examples: "
        + (", ".join(f"{k} {v}" for k, v in manifest["redactions"].items()) or "none")
        + ".",
        f"Duplicates: {manifest['dedup']['candidate_examples']} examples in "
        f"{manifest['dedup']['candidate_clusters']} candidate clusters were compared "
        f"(word-bigram Jaccard ≥ {manifest['dedup']['near_duplicate_threshold']} drops).",
        "",
        "## Files",
        "",
    ]
    out += _table(
        ["file", "examples", "bytes", "sha256"],
        (
            [name, f["examples"], f["bytes"], f"`{f['sha256']}`"]
            for name, f in manifest["files"].items()
        ),
    )
    return "\n".join(out) + "\n"


def write_outputs(output_dir: Path, manifest: Mapping[str, Any], report: str) -> tuple[Path, Path]:
    """Write ``manifest.json`` and ``report.md`` (atomically); return their paths."""
    paths = (output_dir / "manifest.json", output_dir / "report.md")
    contents = (orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n", report.encode())
    for path, data in zip(paths, contents, strict=True):
        write_atomically(path, data)
    return paths
