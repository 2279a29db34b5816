"""The live view renders the rollout, both variants' numbers and the decisions."""

from __future__ import annotations

from collections import Counter

import pytest
from rich.console import Console

from tara.demo.runner import DemoOptions, DemoState
from tara.demo.scenario import PACES, SCENARIOS
from tara.demo.timeline import Marker, Numbers, Sample, ScenarioResult
from tara.demo.view import render, weight_bar


@pytest.mark.parametrize(
    ("weight", "bar"),
    [(0, "░░░░░░░░░░"), (0.25, "██░░░░░░░░"), (0.5, "█████░░░░░"), (1, "██████████"),
     (1.7, "██████████")],
)  # fmt: skip
def test_weight_bar(weight: float, bar: str) -> None:
    assert weight_bar(weight, 10) == bar


def _text(state: DemoState) -> str:
    console = Console(record=True, width=140, color_system=None)
    console.print(render(state))
    return console.export_text()


def test_the_view_shows_numbers_decisions_and_results() -> None:
    scenario = SCENARIOS["bad-canary"]
    state = DemoState(DemoOptions((scenario,), PACES["real"]), scenario=scenario)
    state.latest = Sample(
        3.0, "bad-canary", "progressing", 1, 0.1,
        Numbers(40, 30, 2.61, 0.05, 0.95), Numbers(400, 300, 4.02, None, 1.01),
    )  # fmt: skip
    result = ScenarioResult("bad-canary", scenario.candidate, "rolled_back", scenario.story)
    result.markers = [
        Marker(2.0, "bad-canary", "start", "demo", "stage 1 at 10%", 0.1),
        Marker(9.0, "bad-canary", "rollback", "controller", "rating drop +1.3\nmore", 0.0),
    ]
    result.phase = "rolled_back"
    state.timeline.results.append(result)
    state.counts = Counter(asked=500, answered=490, failed=10, rated=350)
    text = _text(state)
    assert "2.61 (30)" in text
    assert "4.02 (300)" in text
    assert "5.0%" in text
    assert "950 ms" in text
    assert "rollback" in text
    assert "rating drop +1.3" in text
    assert "more" not in text.split("rating drop +1.3")[1].splitlines()[0]
    assert "500 questions" in text
    assert "✓ bad-canary: rolled_back" in text
