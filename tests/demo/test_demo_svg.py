"""Hand-built SVG charts: scaling, path building with gaps and steps, markers and bands."""

from __future__ import annotations

import pytest

from tara.demo.svg import Box, Point, line_chart, path_d, scale
from tara.demo.timeline import Marker, ScenarioResult, Timeline

BOX = Box(width=120, height=70, left=10, right=10, top=10, bottom=10)
"""Plot area x 10..110, y 60 (bottom) .. 10 (top)."""


@pytest.mark.parametrize(
    ("value", "lo", "hi", "a", "b", "expected"),
    [
        (5, 0, 10, 0, 100, 50),
        (0, 0, 10, 60, 10, 60),  # y grows downwards: the low value is at the bottom
        (10, 0, 10, 60, 10, 10),
        (-3, 0, 10, 0, 100, 0),  # clamped
        (42, 0, 10, 0, 100, 100),
        (7, 3, 3, 0, 100, 50),  # an empty range maps to the middle
    ],
)
def test_scale(value: float, lo: float, hi: float, a: float, b: float, expected: float) -> None:
    assert scale(value, lo, hi, a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("points", "steps", "d"),
    [
        ([], False, ""),
        ([(0, 0), (5, 50), (10, 100)], False, "M10.0,60.0 L60.0,35.0 L110.0,10.0"),
        ([(0, 0), (5, None), (10, 100)], False, "M10.0,60.0 M110.0,10.0"),
        ([(0, 0), (5, None), (7, 20), (10, 100)], False, "M10.0,60.0 M80.0,50.0 L110.0,10.0"),
        ([(0, 0), (5, 50), (10, 100)], True, "M10.0,60.0 H60.0 V35.0 H110.0 V10.0"),
        ([(0, None), (10, float("nan"))], False, ""),
    ],
)
def test_path_d(points: list[Point], steps: bool, d: str) -> None:
    assert path_d(points, (0, 10), (0, 100), BOX, steps=steps) == d


def test_a_chart_has_its_lines_legend_scenario_bands_and_decision_markers() -> None:
    result = ScenarioResult("bad-canary", "tara-candidate-bad", "rolled_back", "story")
    result.started, result.ended = 2.0, 8.0
    result.markers = [
        Marker(2.0, "bad-canary", "start", "demo", "stage 1 at 10%", 0.1),
        Marker(7.5, "bad-canary", "rollback", "controller", "rating <drop> & more", 0.0),
    ]
    svg = line_chart(
        "Weight",
        [("canary", "#f00", [(0, 0), (2, 10), (7.5, 0), (10, 0)])],
        (0, 10),
        (0, 100),
        lambda v: f"{v:.0f}%",
        Timeline(results=[result]),
        steps=True,
    )
    assert svg.count("<svg") == 1
    assert svg.count("<path") == 1
    assert ">rollback</text>" in svg
    assert ">bad-canary</text>" in svg
    assert "rating &lt;drop&gt; &amp; more" in svg  # reasons are escaped
    assert "<drop>" not in svg
    assert ">100%</text>" in svg
