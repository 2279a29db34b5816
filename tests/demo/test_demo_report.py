"""The HTML report: four plots, the loop's timeline, the decisions, the summary, escaping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tara.demo.report import charts, html_report, nice_ceiling, weight_steps, write_report
from tara.demo.timeline import Marker, Numbers, Sample, ScenarioResult, Timeline


def _timeline(ok: bool = True) -> Timeline:
    bad = ScenarioResult("bad-canary", "tara-candidate-bad", "rolled_back", "worse")
    bad.started, bad.ended, bad.phase = 1.0, 6.0, "rolled_back" if ok else "succeeded"
    bad.stable_model = "tara-stable"
    bad.markers = [
        Marker(1.0, "bad-canary", "start", "demo", "stage 1 at 10%", 0.1),
        Marker(5.5, "bad-canary", "rollback", "controller", "rating drop +1.3 <b>", 0.0),
    ]
    samples = [
        Sample(
            t=t,
            scenario="bad-canary",
            phase="progressing",
            stage=1,
            weight=0.1,
            canary=Numbers(10, 5, 2.6 if t > 2 else None, 0.1, 0.9),
            stable=Numbers(90, 60, 4.0, 0.0, 1.0),
        )
        for t in (0.5, 1.0, 2.5, 4.0, 6.0)
    ]
    return Timeline(samples=samples, results=[bad])


def test_weight_steps_change_at_each_decision_and_run_to_the_end() -> None:
    markers = _timeline().markers
    assert weight_steps(markers, 9.0) == [(0.0, 0.0), (1.0, 10.0), (5.5, 0.0), (9.0, 0.0)]
    assert weight_steps([], 3.0) == [(0.0, 0.0), (3.0, 0.0)]


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0.07, 0.1), (0.1, 0.1), (0.11, 0.2), (0.21, 0.25), (0.3, 0.5), (1.3, 2.0), (7, 10)],
)
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_the_report_has_the_four_plots_the_decisions_and_the_summary(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.html", _timeline(), {"seed": 7, "pace": "real"})
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 4
    for title in ("Canary weight", "Mean rating", "Error rate", "p95 latency"):
        assert title in page
    assert "every scenario ended as expected" in page
    assert "rating drop +1.3 &lt;b&gt;" in page
    assert ">rollback<" in page
    assert "<th>seed</th><td>7</td>" in page


def test_a_failed_scenario_is_called_out() -> None:
    page = html_report(_timeline(ok=False), {})
    assert "NOT as expected" in page
    assert "did NOT end as expected" in page


def test_no_samples_no_charts() -> None:
    assert charts(Timeline()) == []


def test_the_loop_is_drawn_as_a_timeline_with_the_numbers_and_who_got_which_model() -> None:
    loop = ScenarioResult("full-loop", "ft:m:1", "promoted", "retrain Hindi math")
    loop.started, loop.ended, loop.phase = 0.0, 20.0, "promoted"
    loop.steps = [
        Marker(6.0, "full-loop", "trigger", "controller", "low_rating 2.84 < 3.5", 0.0),
        Marker(6.0, "full-loop", "pending", "controller", "61 rated ≥ 4", 0.0),
        Marker(10.6, "full-loop", "canary", "controller", "canary ro-1 on math:hi", 0.4),
        Marker(19.0, "full-loop", "promoted", "controller", "rollout ro-1 succeeded", 1.0),
    ]
    loop.markers = [Marker(10.5, "full-loop", "start", "run ft-1", "stage 1 at 40%", 0.4)]
    loop.run = {"id": "ft-1", "segment": "math:hi", "state": "promoted", "steps": [1, 2, 3]}
    loop.served = {"math:hi": {"ft:m:1": 541, "tara-stable": 1181}, "physics:en": {"s": 259}}
    page = html_report(Timeline(results=[loop]), {})
    assert "The loop: run ft-1 for math:hi, promoted after 3 steps" in page
    timeline = page[page.index('aria-label="the fine-tuning loop as a timeline"') :]
    events = ("trigger", "pending", "start", "canary", "promoted")
    assert [e for e in events if f">{e}<" in timeline] == list(events)
    assert "low_rating 2.84 &lt; 3.5" in page
    assert "<td>physics:en</td><td>s</td><td>259</td>" in page
    assert "The loop" not in html_report(_timeline(), {})
