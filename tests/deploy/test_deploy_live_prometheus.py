"""A real Prometheus scraping live gateways under simulated traffic.

Every query of the Grafana dashboard (panels, annotation, template variables)
and every recording rule must return data, as Grafana would run them with one
track and one segment selected. The deployment is the production wiring: two
gateway replicas and the rollout controller sharing Redis, the sandbox
upstream with a canary that fails half its attempts (upstream retries,
fallbacks, broken streams), students across subjects × languages, streaming
and not, regenerating (``X-Tara-Retry``) and rating answers with tags. The
controller starts the canary at 10% and is promoted to 25% once Prometheus
watches. Prometheus scrapes every second and evaluates the rules every
second; the rules' windows stay as deployed ([5m], [1h]): ``rate()`` needs
only two samples inside them.

The queries below that legitimately have no data in this setup are listed in
``EXPECTED_EMPTY`` with the reason; they must still run and return nothing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from deploy_contract import DEPLOY, recording_rules
from live_stack import SEGMENT, TRACK, LiveStack
from prometheus_server import PrometheusServer, Sample, require_prometheus, running_prometheus

from tara.serving import free_port

pytestmark = [pytest.mark.integration, pytest.mark.redis]

DASHBOARD: dict[str, Any] = json.loads(
    (DEPLOY / "grafana/dashboards/tara-rollout.json").read_text(encoding="utf-8")
)
GRAFANA_VARIABLES = {"track": TRACK, "segment": SEGMENT.label, "__rate_interval": "1m"}
"""What Grafana substitutes with one track and one segment selected.

``$__rate_interval`` is at least four scrape intervals; 1m is what a 15 s
production scrape gives, and plenty of samples at 1 s.
"""
PATIENCE = 45.0
"""Seconds, from the start, until every query must have data: target discovery (~5 s)
plus a few scrapes. One budget for the module, so a broken setup fails fast."""

VALUES_AFTER_PROMOTION = {"Canary weight [A]": 0.25, "Rollout stage [A]": 1.0}
EXPECTED_EMPTY = {
    "Dropped interaction records [A]": (
        "nothing is dropped: each replica's SQLite log keeps up with this traffic"
    ),
    "Fine-tuning triggers and runs [A]": (
        "no fine-tuning trigger fires in seconds: the controller's loop looks at the week's "
        "interactions, and these few minutes of good ratings fire no rule"
    ),
    "Fine-tuning triggers and runs [B]": "no fine-tuning run starts, let alone finishes",
}


def _panel_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            queries[f"{panel['title']} [{target['refId']}]"] = target["expr"]
    for annotation in DASHBOARD["annotations"]["list"]:
        if "expr" in annotation:
            queries[f"annotation: {annotation['name']}"] = annotation["expr"]
    return queries


PANEL_QUERIES = _panel_queries()
WITH_DATA = sorted(set(PANEL_QUERIES) - set(EXPECTED_EMPTY))
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")
TEMPLATE_QUERIES = {
    v["name"]: v["definition"] for v in DASHBOARD["templating"]["list"] if v["type"] == "query"
}


def promql(expr: str) -> str:
    """``expr`` with the dashboard's variables filled in; an unknown variable is a KeyError."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA_VARIABLES[m[1]], expr)


CANARY_ONLY = re.compile(r"tara_upstream_retries|tara_request_errors:|tara_request_failures:")
"""Series only the failing canary has: the stable model never fails, so it has no upstream
retries, errors or failures (the error and failure *ratios* cover both variants)."""


def variants_wanted(expr: str) -> set[str]:
    """Variants a result split by variant must cover."""
    return {"canary"} if CANARY_ONLY.search(expr) else {"stable", "canary"}


def has_data(expr: str) -> Callable[[list[Sample]], bool]:
    """Accept a non-empty result that, when split by variant, covers both variants."""
    wanted = variants_wanted(expr)

    def accept(result: list[Sample]) -> bool:
        variants = {s["metric"]["variant"] for s in result if "variant" in s["metric"]}
        return bool(result) and (not variants or wanted <= variants)

    return accept


@dataclass(frozen=True)
class Live:
    prometheus: PrometheusServer
    stack: LiveStack
    deadline: float
    """``time.monotonic()`` by which every query must have data."""

    def wait_for_data(self, expr: str) -> list[Sample]:
        """Wait until ``expr`` has data, failing at once if the stack died."""

        def accept(result: list[Sample]) -> bool:
            self.stack.check()
            return has_data(expr)(result)

        patience = max(1.0, self.deadline - time.monotonic())
        return self.prometheus.wait_for(expr, accept, patience=patience)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Prometheus scraping two gateways and the controller under traffic, after a promotion."""
    require_prometheus()
    deadline = time.monotonic() + PATIENCE
    ports, controller_port = [free_port(), free_port()], free_port()
    targets = [f"127.0.0.1:{port}" for port in ports]
    with (
        running_prometheus(targets, [f"127.0.0.1:{controller_port}"]) as prometheus,
        LiveStack(ports, controller_port, tmp_path_factory.mktemp("live")) as stack,
    ):
        # Promote only after Prometheus has seen the decision counter at 0, so the
        # promotion is an increase it can see (the "Rollout decisions" panel, annotation).
        prometheus.wait_for(
            'tara_rollout_decisions_total{decision="promote"}',
            lambda r: [s["value"][1] for s in r] == ["0"],
            patience=PATIENCE,
        )
        assert stack.rollout is not None
        stack.call(stack.rollout.promote)
        yield Live(prometheus, stack, deadline)


def test_every_gateway_replica_and_the_controller_are_scraped(live: Live) -> None:
    result = live.prometheus.wait_for('up{job=~"tara-.*"} == 1', lambda r: len(r) == 3)
    assert {(s["metric"]["job"], s["metric"]["instance"]) for s in result} == {
        *(("tara-gateway", f"127.0.0.1:{port}") for port in live.stack.ports),
        ("tara-controller", f"127.0.0.1:{live.stack.controller_port}"),
    }


def test_rollout_panels_show_the_promotion(live: Live) -> None:
    def values(query: str) -> Callable[[list[Sample]], bool]:
        return lambda r: [float(s["value"][1]) for s in r] == [VALUES_AFTER_PROMOTION[query]]

    for query in VALUES_AFTER_PROMOTION:
        live.prometheus.wait_for(promql(PANEL_QUERIES[query]), values(query), patience=10)
    for query in ("Rollout decisions [A]", "annotation: Rollout decisions"):
        result = live.wait_for_data(promql(PANEL_QUERIES[query]))
        assert {s["metric"]["decision"] for s in result} == {"promote"}, query


@pytest.mark.parametrize("name", sorted(TEMPLATE_QUERIES))
def test_template_variable_has_values(live: Live, name: str) -> None:
    match = LABEL_VALUES.match(TEMPLATE_QUERIES[name])
    assert match, TEMPLATE_QUERIES[name]
    selector = promql(match["selector"])
    live.wait_for_data(selector)
    response = httpx.get(
        f"{live.prometheus.url}/api/v1/label/{match['label']}/values",
        params={"match[]": selector},
        timeout=5,
    )
    assert response.json()["data"] == [GRAFANA_VARIABLES[name]]


@pytest.mark.parametrize("query", WITH_DATA)
def test_dashboard_query_returns_data(live: Live, query: str) -> None:
    result = live.wait_for_data(promql(PANEL_QUERIES[query]))
    assert all(s["metric"].get("track", TRACK) == TRACK for s in result)


@pytest.mark.parametrize("record", sorted(recording_rules()))
def test_recording_rule_returns_data(live: Live, record: str) -> None:
    result = live.wait_for_data(record)
    assert {s["metric"]["track"] for s in result} == {TRACK}
    assert {s["metric"]["__name__"] for s in result} == {record}


@pytest.mark.parametrize("query", sorted(EXPECTED_EMPTY))
def test_dashboard_query_without_data_in_this_setup_runs(live: Live, query: str) -> None:
    # After the other tests, so the traffic has run; still it must be empty.
    live.wait_for_data(promql(PANEL_QUERIES["Requests [A]"]))
    assert live.prometheus.query(promql(PANEL_QUERIES[query])) == [], EXPECTED_EMPTY[query]


def test_expected_empty_names_real_queries() -> None:
    assert set(EXPECTED_EMPTY) <= set(PANEL_QUERIES)


def test_traffic_covered_both_variants_and_feedback(live: Live) -> None:
    live.stack.check()
    tally = live.stack.classroom.tally
    assert tally.answers["stable", 200] > 0, live.stack.details
    assert tally.answers["canary", 200] > 0, live.stack.details
    assert tally.streamed > 0
    assert tally.retries > 0
    assert set(tally.feedback) == {200}, live.stack.details
