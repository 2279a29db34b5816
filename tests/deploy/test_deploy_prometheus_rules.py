"""Prometheus config, recording rules and alerts: valid, unit-tested, and true to the contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_contract import (
    CONTRACT,
    COUNTER,
    DEPLOY,
    RULES_DIR,
    contract_problems,
    load_rule_groups,
    promtool,
)
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from tara.telemetry.metrics import MetricsRecorder

PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RULES = [rule for group in load_rule_groups() for rule in group["rules"]]
ALERTS = [rule for rule in RULES if "alert" in rule]
RECORDS = [rule for rule in RULES if "record" in rule]


def _name(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule.get("record"))


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def test_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_loads_every_rule_file_and_scrapes_the_alerted_jobs() -> None:
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    loaded = {(PROMETHEUS_DIR / f).resolve() for f in config["rule_files"]}
    assert loaded == {p.resolve() for p in RULES_DIR.glob("*.yml")}
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"tara-gateway", "tara-controller"} <= jobs


@pytest.mark.parametrize("path", sorted(RULES_DIR.glob("*.yml")), ids=lambda p: p.name)
def test_rules_are_valid(path: Path) -> None:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    result = promtool("test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", RULES, ids=_name)
def test_rule_uses_only_contract_series_and_labels(rule: dict[str, Any]) -> None:
    assert contract_problems(rule["expr"]) == []


@pytest.mark.parametrize("rule", RECORDS, ids=_name)
def test_recording_rule_is_named_level_metric_operation(rule: dict[str, Any]) -> None:
    level, metric, operation = rule["record"].split(":")
    assert level
    assert operation
    assert metric.startswith("tara_")


@pytest.mark.parametrize("rule", ALERTS, ids=_name)
def test_alert_has_severity_and_text(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


def _alert_evals() -> dict[str, list[bool]]:
    """For each alert, whether each of its unit-test evaluations expects it to fire."""
    evals: dict[str, list[bool]] = {}
    for path in RULE_TESTS:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                evals.setdefault(check["alertname"], []).append(bool(check.get("exp_alerts")))
    return evals


@pytest.mark.parametrize("rule", ALERTS, ids=_name)
def test_alert_is_unit_tested_firing_and_not_firing(rule: dict[str, Any]) -> None:
    outcomes = _alert_evals().get(rule["alert"], [])
    assert True in outcomes, "no unit test shows it firing"
    assert False in outcomes, "no unit test shows it staying silent"


@pytest.mark.parametrize("rule", RECORDS, ids=_name)
def test_recording_rule_is_unit_tested(rule: dict[str, Any]) -> None:
    tested = {
        check["expr"].split("{")[0]
        for path in RULE_TESTS
        for case in _load(path)["tests"]
        for check in case.get("promql_expr_test", [])
    }
    assert rule["record"] in tested


def test_contract_check_catches_unknown_series_labels_and_student_ids() -> None:
    problems = contract_problems(
        'sum by (student_id) (rate(tara_requests_total{segment="all"}[5m])) + tara_nope'
    )
    assert problems == [
        "unknown series 'tara_nope'",
        "tara_requests_total has no label(s) ['segment']",
        "unknown label 'student_id'",
        "student-id label 'student_id'",
    ]


def test_contract_is_what_the_code_exports() -> None:
    recorder = MetricsRecorder(CollectorRegistry())
    exported = {}
    for metric in vars(recorder).values():
        if isinstance(metric, MetricWrapperBase):
            [family] = metric.describe()
            name = f"{family.name}_total" if family.type == COUNTER else family.name
            exported[name] = (family.type, frozenset(metric._labelnames))
    assert exported == CONTRACT
