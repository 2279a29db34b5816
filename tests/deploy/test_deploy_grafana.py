"""The Grafana dashboard and provisioning: well-formed, and every query valid and on-contract."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from deploy_contract import (
    DEPLOY,
    check_exprs_with_promtool,
    contract_problems,
    known_series,
    usage,
)

GRAFANA = DEPLOY / "grafana"
DASHBOARD_PATH = GRAFANA / "dashboards" / "tara-rollout.json"
DASHBOARD: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
VARIABLES = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
ANNOTATIONS = [a for a in DASHBOARD["annotations"]["list"] if "expr" in a]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def promql(expr: str) -> str:
    """``expr`` as Prometheus sees it once Grafana has filled in its variables."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def _exprs() -> list[tuple[str, str]]:
    exprs = [(p["title"], t["expr"]) for p in PANELS for t in p["targets"]]
    return exprs + [(a["name"], a["expr"]) for a in ANNOTATIONS]


EXPRS = _exprs()


def test_dashboard_header() -> None:
    assert 36 <= DASHBOARD["schemaVersion"] <= 41
    assert DASHBOARD["uid"] == "tara-rollout"
    assert DASHBOARD["title"]
    assert DASHBOARD["id"] is None


def test_datasource_is_a_variable() -> None:
    variable = VARIABLES["datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"


@pytest.mark.parametrize("name", ["track", "segment"])
def test_template_variable_lists_label_values_of_a_contract_series(name: str) -> None:
    variable = VARIABLES[name]
    assert variable["type"] == "query"
    assert variable["datasource"] == DATASOURCE
    match = LABEL_VALUES.match(variable["definition"])
    assert match, variable["definition"]
    assert variable["query"]["query"] == variable["definition"]
    [(series, _)] = usage(promql(match["selector"])).selectors
    assert match["label"] == name
    assert name in known_series()[series]


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p["title"])
def test_panel_queries_the_datasource_variable(panel: dict[str, Any]) -> None:
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"]
    ref_ids = [t["refId"] for t in panel["targets"]]
    assert len(set(ref_ids)) == len(ref_ids)
    for target in panel["targets"]:
        assert target["datasource"] == DATASOURCE
        assert target["expr"].strip()


@pytest.mark.parametrize(("title", "expr"), EXPRS, ids=[t for t, _ in EXPRS])
def test_query_uses_only_contract_series_and_labels(title: str, expr: str) -> None:
    assert contract_problems(promql(expr)) == []


def test_every_query_parses_with_promtool() -> None:
    result = check_exprs_with_promtool(promql(expr) for _, expr in EXPRS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rejects_a_broken_query() -> None:
    result = check_exprs_with_promtool(["sum by (track (tara_requests_total)"])
    assert result.returncode != 0


def test_dashboard_covers_the_operators_questions() -> None:
    used = {name for _, expr in EXPRS for name, _ in usage(promql(expr)).selectors}
    assert {
        "tara_rollout_canary_weight",
        "tara_rollout_stage",
        "tara_rollout_decisions_total",
        "track_variant:tara_feedback_rating:mean1h",
        "track_variant:tara_request_error_ratio:rate5m",
        "track_variant:tara_request_duration_seconds:p95_5m",
        "track_variant:tara_time_to_first_token_seconds:p95_5m",
        "track_variant_subject:tara_user_retries:rate5m",
        "tara_feedback_rating_count",
        "track_variant_tag:tara_feedback_tags:increase1h",
        "track_variant_kind:tara_tokens:rate5m",
        "tara_interactions_dropped_total",
        "tara_routing_table_healthy",
        "tara_routing_table_age_seconds",
        "up",
    } <= used


def test_decision_annotation_marks_rollout_changes() -> None:
    [annotation] = ANNOTATIONS
    assert annotation["datasource"] == DATASOURCE
    assert annotation["enable"] is True
    [(series, _)] = usage(promql(annotation["expr"])).selectors
    assert series == "tara_rollout_decisions_total"
    assert "{{decision}}" in annotation["titleFormat"]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(set(ids)) == len(ids)
    taken: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_provisioning_loads_the_dashboards_from_prometheus() -> None:
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/tara.yaml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    [source] = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http")
