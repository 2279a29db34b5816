"""SVG line charts for the demo report, built by hand (no plotting dependency).

A chart is an axis frame, shaded scenario bands, dashed decision markers
and a few ``<path>`` elements whose ``d`` :func:`path_d` builds from
``(t, value)`` points; ``None`` values leave gaps.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tara.demo.timeline import Marker, ScenarioResult, Timeline
from tara.rollout.decisions import DecisionName

CANARY_COLOUR = "#d9480f"
STABLE_COLOUR = "#1864ab"
MARKER_COLOURS: dict[str, str] = {
    DecisionName.START: "#495057",
    DecisionName.STAGE_PASSED: "#1c7ed6",
    DecisionName.PROMOTE: "#1c7ed6",
    DecisionName.SUCCEED: "#2b8a3e",
    DecisionName.ROLLBACK: "#c92a2a",
    DecisionName.ABORT: "#c92a2a",
    DecisionName.PAUSE: "#e67700",
    DecisionName.STALLED: "#e67700",
}

Point = tuple[float, float | None]
"""``(x, y)``; ``y`` ``None`` is a gap in the line."""


@dataclass(frozen=True, slots=True)
class Box:
    """Where a chart's plot area sits inside its SVG."""

    width: float = 860
    height: float = 220
    left: float = 56
    right: float = 16
    top: float = 28
    bottom: float = 28

    @property
    def x0(self) -> float:
        """Left edge of the plot area."""
        return self.left

    @property
    def x1(self) -> float:
        """Right edge of the plot area."""
        return self.width - self.right

    @property
    def y0(self) -> float:
        """Bottom edge of the plot area (SVG y grows downwards)."""
        return self.height - self.bottom

    @property
    def y1(self) -> float:
        """Top edge of the plot area."""
        return self.top


def scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    """Map ``value`` from ``[lo, hi]`` onto ``[out_lo, out_hi]``, clamped (empty range: middle)."""
    if hi <= lo:
        return (out_lo + out_hi) / 2
    frac = min(1.0, max(0.0, (value - lo) / (hi - lo)))
    return out_lo + frac * (out_hi - out_lo)


def path_d(
    points: Sequence[Point],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    box: Box,
    *,
    steps: bool = False,
) -> str:
    """The ``d`` of a line through ``points``; ``None`` breaks it, ``steps`` draws stairs."""
    parts: list[str] = []
    pen_down = False
    for x, y in points:
        if y is None or math.isnan(y):
            pen_down = False
            continue
        px = scale(x, *x_range, box.x0, box.x1)
        py = scale(y, *y_range, box.y0, box.y1)
        if not pen_down:
            parts.append(f"M{px:.1f},{py:.1f}")
            pen_down = True
        elif steps:
            parts.append(f"H{px:.1f} V{py:.1f}")
        else:
            parts.append(f"L{px:.1f},{py:.1f}")
    return " ".join(parts)


def _axis(
    box: Box,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    fmt: Callable[[float], str],
) -> list[str]:
    out = [
        f'<rect x="{box.x0}" y="{box.y1}" width="{box.x1 - box.x0}" '
        f'height="{box.y0 - box.y1}" fill="#fff" stroke="#ced4da"/>'
    ]
    for i in range(5):
        v = y_range[0] + (y_range[1] - y_range[0]) * i / 4
        y = scale(v, *y_range, box.y0, box.y1)
        out.append(
            f'<line x1="{box.x0}" x2="{box.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#f1f3f5"/>'
        )
        out.append(
            f'<text x="{box.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt(v)}</text>'
        )
    span = x_range[1] - x_range[0]
    step = next((s for s in (5, 10, 15, 20, 30, 60, 120, 300) if span / s <= 12), 600)
    t = 0.0
    while t <= x_range[1]:
        if t >= x_range[0]:
            x = scale(t, *x_range, box.x0, box.x1)
            out.append(
                f'<text x="{x:.1f}" y="{box.y0 + 16}" text-anchor="middle" class="tick">'
                f"{t:.0f}s</text>"
            )
        t += step
    return out


def _bands(results: Sequence[ScenarioResult], box: Box, x_range: tuple[float, float]) -> list[str]:
    out = []
    for i, r in enumerate(results):
        if r.started is None:
            continue
        end = r.ended if r.ended is not None else x_range[1]
        a, b = scale(r.started, *x_range, box.x0, box.x1), scale(end, *x_range, box.x0, box.x1)
        fill = "#f8f9fa" if i % 2 == 0 else "#f1f3f5"
        out.append(
            f'<rect x="{a:.1f}" y="{box.y1}" width="{max(b - a, 1):.1f}" '
            f'height="{box.y0 - box.y1}" fill="{fill}" opacity="0.9"/>'
        )
        out.append(
            f'<text x="{a + 4:.1f}" y="{box.y1 + 12}" class="band">{html.escape(r.name)}</text>'
        )
    return out


def _markers(
    markers: Sequence[Marker], box: Box, x_range: tuple[float, float], label: bool
) -> list[str]:
    out = []
    for m in markers:
        x = scale(m.t, *x_range, box.x0, box.x1)
        colour = MARKER_COLOURS.get(m.decision, "#868e96")
        tip = html.escape(f"{m.t:.1f}s {m.scenario}: {m.decision} ({m.actor}) {m.reason}")
        out.append(
            f'<g class="marker"><title>{tip}</title><line x1="{x:.1f}" x2="{x:.1f}" y1="{box.y1}" '
            f'y2="{box.y0}" stroke="{colour}" stroke-dasharray="4 3" stroke-width="1.5"/>'
        )
        if label:
            out.append(
                f'<text x="{x + 3:.1f}" y="{box.y1 - 6}" fill="{colour}" class="mark">'
                f"{html.escape(m.decision)}</text>"
            )
        out.append("</g>")
    return out


def line_chart(
    title: str,
    lines: Sequence[tuple[str, str, Sequence[Point]]],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    fmt: Callable[[float], str],
    timeline: Timeline,
    *,
    steps: bool = False,
    box: Box | None = None,
) -> str:
    """One SVG chart: scenario bands, decision markers, axes, ``(label, colour, points)`` lines."""
    box = box or Box()
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {box.width} {box.height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        *_axis(box, x_range, y_range, fmt),
        *_bands(timeline.results, box, x_range),
        *_markers(timeline.markers, box, x_range, label=steps),
    ]
    for i, (label, colour, points) in enumerate(lines):
        d = path_d(points, x_range, y_range, box, steps=steps)
        body.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        x = box.x1 - 150 + i * 80
        body.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{x + 14}" y="15" class="legend">{html.escape(label)}</text>')
    body.append("</svg>")
    return f"<h2>{html.escape(title)}</h2>\n" + "\n".join(body)


STEP_COLOURS: dict[str, str] = {
    "trigger": "#e8590c",
    "promoted": "#2b8a3e",
    "rejected": "#c92a2a",
    "rolled_back": "#c92a2a",
    "failed": "#c92a2a",
    "cancelled": "#c92a2a",
}
"""Colours of a fine-tuning run's events; its other steps are grey, canary decisions blue."""


def event_colour(name: str) -> str:
    """The colour of one event of the loop's timeline."""
    return STEP_COLOURS.get(name) or MARKER_COLOURS.get(name, "#495057")


def loop_timeline(events: Sequence[Marker], box: Box | None = None) -> str:
    """The fine-tuning loop on one time axis: the trigger, the run's steps, the canary's stages.

    Labels take four rows in turn so that events close in time stay readable;
    each event's reason (the numbers behind it) is its tooltip.
    """
    box = box or Box(height=170, top=20, bottom=28)
    if not events:
        return ""
    t0, t1 = events[0].t, events[-1].t
    pad = max(1.0, (t1 - t0) * 0.04)
    x_range = (t0 - pad, t1 + pad)
    axis_y = box.y0 - 18
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {box.width} {box.height}" '
        'role="img" aria-label="the fine-tuning loop as a timeline">',
        f'<line x1="{box.x0}" x2="{box.x1}" y1="{axis_y}" y2="{axis_y}" stroke="#adb5bd"/>',
    ]
    for t in (t0, t1):
        x = scale(t, *x_range, box.x0, box.x1)
        body.append(
            f'<text x="{x:.1f}" y="{box.y0}" text-anchor="middle" class="tick">{t:.0f}s</text>'
        )
    for i, e in enumerate(events):
        x = scale(e.t, *x_range, box.x0, box.x1)
        y = box.y1 + 14 + (i % 4) * 22
        colour = event_colour(e.decision)
        tip = html.escape(f"{e.t:.1f}s {e.decision} ({e.actor}): {e.reason}")
        body.append(
            f'<g class="marker"><title>{tip}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y + 3}" y2="{axis_y}" stroke="{colour}" '
            f'stroke-dasharray="2 2"/><circle cx="{x:.1f}" cy="{axis_y}" r="4" fill="{colour}"/>'
            f'<text x="{x:.1f}" y="{y}" text-anchor="middle" fill="{colour}" class="mark">'
            f"{html.escape(e.decision)}</text></g>"
        )
    body.append("</svg>")
    return "\n".join(body)
