"""The metric contract the deployment artifacts are checked against, and PromQL inspection.

``CONTRACT`` restates DESIGN.md's metric table (plus the gateway's operational
metrics); rules and dashboards may only use those series, the recording rules
defined in ``deploy/prometheus/rules`` and Prometheus' own ``up``. Expressions
are parsed with ``promql_parser`` to find every series and label they use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from dependencies import missing

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES_DIR = DEPLOY / "prometheus" / "rules"
PROMTOOL = shutil.which("promtool")

COUNTER, HISTOGRAM, GAUGE = "counter", "histogram", "gauge"
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    name: (kind, frozenset(labels.split()))
    for name, kind, labels in [
        ("tara_requests_total", COUNTER, "track variant subject language status"),
        ("tara_request_duration_seconds", HISTOGRAM, "track variant"),
        ("tara_time_to_first_token_seconds", HISTOGRAM, "track variant"),
        ("tara_upstream_retries_total", COUNTER, "track variant reason"),
        ("tara_fallbacks_total", COUNTER, "track reason"),
        ("tara_user_retries_total", COUNTER, "track variant subject language"),
        ("tara_feedback_rating", HISTOGRAM, "track variant subject language"),
        ("tara_feedback_tags_total", COUNTER, "track variant tag"),
        ("tara_tokens_total", COUNTER, "track variant kind"),
        ("tara_gateway_overhead_seconds", HISTOGRAM, "track variant stream"),
        ("tara_rollout_canary_weight", GAUGE, "track segment"),
        ("tara_rollout_stage", GAUGE, "track segment"),
        ("tara_rollout_decisions_total", COUNTER, "track decision"),
        ("tara_trigger_fired_total", COUNTER, "trigger"),
        ("tara_finetune_runs_total", COUNTER, "status"),
        # the controller's fine-tuning loop (tara.retrain): new, not in DESIGN.md's table yet
        ("tara_finetune_runs_open", GAUGE, "state"),
        ("tara_finetune_run_state_age_seconds", GAUGE, "state"),
        # operational metrics of the gateway (tara.telemetry.metrics)
        ("tara_request_errors_total", COUNTER, "track variant error_class"),
        ("tara_rejected_requests_total", COUNTER, "status route"),
        ("tara_requests_in_flight", GAUGE, ""),
        ("tara_interactions_dropped_total", COUNTER, "reason"),
        ("tara_interaction_log_up", GAUGE, ""),
        ("tara_interaction_spool_records", GAUGE, ""),
        ("tara_interaction_spool_bytes", GAUGE, ""),
        ("tara_telemetry_dropped_total", COUNTER, "sink reason"),
        ("tara_routing_table_healthy", GAUGE, ""),
        ("tara_routing_table_age_seconds", GAUGE, ""),
        ("tara_routing_table_version", GAUGE, ""),
        # operational metric of the controller
        ("tara_controller_leadership_lost_total", COUNTER, "reason"),
    ]
}
TARGET_LABELS = frozenset({"job", "instance"})
"""Labels Prometheus attaches to every scraped series."""
PROMETHEUS_SERIES = {"up": TARGET_LABELS, "ALERTS": frozenset({"alertname", "alertstate"})}
STUDENT_LABELS = re.compile(r"student|user|learner", re.IGNORECASE)


def scraped_series() -> dict[str, frozenset[str]]:
    """Every series name the gateway and controller expose, with its label names."""
    series: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in CONTRACT.items():
        labels |= TARGET_LABELS
        if kind == HISTOGRAM:
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series


def load_rule_groups() -> list[dict[str, Any]]:
    """Every rule group of every file in deploy/prometheus/rules."""
    groups: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return groups


def recording_rules() -> dict[str, frozenset[str]]:
    """Recorded series names with their labels, read off the ``level:`` part of the name."""
    return {
        rule["record"]: frozenset(rule["record"].split(":")[0].split("_"))
        for group in load_rule_groups()
        for rule in group["rules"]
        if "record" in rule
    }


def known_series() -> dict[str, frozenset[str]]:
    """Everything an expression may select: scraped, recorded and Prometheus' own series."""
    return {**scraped_series(), **recording_rules(), **PROMETHEUS_SERIES}


@dataclass
class Usage:
    """What one PromQL expression selects: series names and every label name it mentions."""

    selectors: list[tuple[str, set[str]]] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)


def usage(expr: str) -> Usage:
    """Parse ``expr`` and collect the series and labels it uses."""
    found = Usage()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names = {m.name for m in node.matchers.matchers if m.name != "__name__"}
            found.selectors.append((node.name, names))
            found.labels |= names
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.labels |= set(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                found.labels |= set(node.modifier.matching.labels)
            found.labels |= set(node.modifier.group_labels or [])

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def contract_problems(expr: str) -> list[str]:
    """Reasons ``expr`` breaks the contract (unknown series or labels, student ids); [] if none."""
    series = known_series()
    use = usage(expr)
    problems = [f"unknown series {name!r}" for name, _ in use.selectors if name not in series]
    for name, labels in use.selectors:
        extra = labels - series.get(name, labels)
        if extra:
            problems.append(f"{name} has no label(s) {sorted(extra)}")
    every_label = frozenset().union(*series.values())
    problems += [f"unknown label {label!r}" for label in sorted(use.labels - every_label)]
    problems += [f"student-id label {x!r}" for x in sorted(use.labels) if STUDENT_LABELS.search(x)]
    return problems


def require_promtool() -> str:
    """The promtool path; skips the calling test when it is not installed."""
    if PROMTOOL is None:
        missing("promtool; run scripts/setup")
    return PROMTOOL


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool and return its completed process (never raises on failure)."""
    return subprocess.run(
        [require_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def check_exprs_with_promtool(exprs: Iterable[str]) -> subprocess.CompletedProcess[str]:
    """Have promtool parse ``exprs`` by writing them as recording rules and checking the file."""
    rules = [{"record": f"check:expr:{i}", "expr": e} for i, e in enumerate(exprs)]
    with tempfile.TemporaryDirectory(prefix="tara-promql-") as tmp:
        path = Path(tmp) / "exprs.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
        return promtool("check", "rules", str(path))
