"""The demo's HTML report: the plots of weight and metrics over time, decisions and a summary.

One self-contained file (inline SVG from :mod:`tara.demo.svg`, inline CSS)
an SRE can open in a browser or attach to a ticket.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tara.demo.svg import (
    CANARY_COLOUR,
    MARKER_COLOURS,
    STABLE_COLOUR,
    Point,
    event_colour,
    line_chart,
    loop_timeline,
)
from tara.demo.timeline import Marker, Numbers, Sample, ScenarioResult, Timeline


def _series(
    samples: Sequence[Sample], pick: Callable[[Numbers], float | None], variant: str
) -> list[Point]:
    return [(s.t, pick(s.canary if variant == "canary" else s.stable)) for s in samples]


def weight_steps(markers: Sequence[Marker], end: float) -> list[Point]:
    """Canary weight in percent as a staircase that changes exactly at each decision."""
    points: list[Point] = [(0.0, 0.0)]
    for m in markers:
        points.append((m.t, m.weight * 100))
    points.append((end, points[-1][1]))
    return points


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value * (1 - 1e-9))


def _upper(values: Sequence[float | None], floor: float) -> float:
    return nice_ceiling(max([floor, *(v for v in values if v is not None)]))


def charts(timeline: Timeline) -> list[str]:
    """Canary weight with decisions; rating, error rate and p95, canary vs stable."""
    samples = timeline.samples
    if not samples:
        return []
    x_range = (0.0, max(s.t for s in samples))
    weight = weight_steps(timeline.markers, x_range[1])
    out = [
        line_chart(
            "Canary weight (% of students) and the controller's decisions",
            [("canary", CANARY_COLOUR, weight)],
            x_range,
            (0, 100),
            lambda v: f"{v:.0f}%",
            timeline,
            steps=True,
        )
    ]
    metrics: list[tuple[str, Callable[[Numbers], float | None], Callable[[float], str]]] = [
        ("Mean rating (1-5)", lambda n: n.rating, lambda v: f"{v:.1f}"),
        ("Error rate", lambda n: n.error_rate, lambda v: f"{v:.1%}"),
        ("p95 latency", lambda n: n.p95, lambda v: f"{v * 1000:.0f} ms"),
    ]
    for title, pick, fmt in metrics:
        canary, stable = _series(samples, pick, "canary"), _series(samples, pick, "stable")
        if title.startswith("Mean rating"):
            y_range = (1.0, 5.0)
        else:
            floor = 0.1 if title == "Error rate" else 0.01
            y_range = (0.0, _upper([y for _, y in canary + stable], floor))
        out.append(
            line_chart(
                f"{title}: canary vs stable",
                [("canary", CANARY_COLOUR, canary), ("stable", STABLE_COLOUR, stable)],
                x_range,
                y_range,
                fmt,
                timeline,
            )
        )
    return out


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 900px; color: #212529; }
h1 { font-size: 1.5em; } h2 { font-size: 1.05em; margin: 1.6em 0 0.3em; }
table { border-collapse: collapse; width: 100%; }
td, th { padding: 4px 8px; border-bottom: 1px solid #dee2e6; text-align: left; }
td { vertical-align: top; }
.ok { color: #2b8a3e; font-weight: 600; } .bad { color: #c92a2a; font-weight: 600; }
.tick { font-size: 10px; fill: #868e96; } .band { font-size: 11px; fill: #495057; }
.mark, .legend { font-size: 11px; }
.reason { white-space: pre-wrap; font-size: 12px; color: #495057; }
"""


def _summary_rows(results: Sequence[ScenarioResult]) -> str:
    rows = []
    for r in results:
        d = r.to_dict()
        verdict = (
            '<span class="ok">as expected</span>'
            if r.ok
            else '<span class="bad">NOT as expected</span>'
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    r.name,
                    r.candidate,
                    r.expected,
                    r.phase or r.error,
                    d["seconds"],
                    r.stable_model,
                )
            )
            + f"<td>{verdict}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("scenario", "candidate", "expected", "outcome", "seconds", "stable after", "")
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _decision_rows(markers: Sequence[Marker]) -> str:
    rows = [
        f"<tr><td>{m.t:.1f}s</td><td>{html.escape(m.scenario)}</td>"
        f'<td style="color:{MARKER_COLOURS.get(m.decision, "#868e96")}">'
        f"{html.escape(m.decision)}</td>"
        f"<td>{html.escape(m.actor)}</td><td>{m.weight:.0%}</td>"
        f'<td class="reason">{html.escape(m.reason)}</td></tr>'
        for m in markers
    ]
    head = "".join(
        f"<th>{h}</th>" for h in ("time", "scenario", "decision", "by", "weight after", "why")
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def loop_section(result: ScenarioResult) -> str:
    """The fine-tuning loop of one scenario: its timeline, each event's numbers, who got what."""
    events = sorted([*result.steps, *result.markers], key=lambda m: m.t)
    run = result.run or {}
    title = (
        f"The loop: run {run.get('id')} for {run.get('segment')}, "
        f"{run.get('state')} after {len(run.get('steps', []))} steps"
    )
    rows = [
        f"<tr><td>{e.t:.1f}s</td>"
        f'<td style="color:{event_colour(e.decision)}">{html.escape(e.decision)}</td>'
        f"<td>{html.escape(e.actor)}</td><td>{e.weight:.0%}</td>"
        f'<td class="reason">{html.escape(e.reason)}</td></tr>'
        for e in events
    ]
    head = "".join(f"<th>{h}</th>" for h in ("time", "event", "by", "canary weight", "numbers"))
    served = "".join(
        f"<tr><td>{html.escape(segment)}</td><td>{html.escape(model)}</td><td>{n}</td></tr>"
        for segment, models in result.served.items()
        for model, n in models.items()
    )
    return "\n".join(
        [
            f"<h2>{html.escape(title)}</h2>",
            loop_timeline(events),
            f"<table><tr>{head}</tr>{''.join(rows)}</table>",
            "<h2>Who got which model while the loop ran</h2>",
            f"<table><tr><th>segment</th><th>model</th><th>answers</th></tr>{served}</table>",
        ]
    )


def html_report(timeline: Timeline, meta: dict[str, Any]) -> str:
    """The whole report page."""
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in meta.items()
    )
    verdict = (
        "every scenario ended as expected" if timeline.ok else "a scenario did NOT end as expected"
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>tara demo report</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>tara demo: canary rollouts and the fine-tuning loop, decided by the controller</h1>",
        f'<p class="{"ok" if timeline.ok else "bad"}">{verdict}.</p>',
        _summary_rows(timeline.results),
        *charts(timeline),
        *(loop_section(r) for r in timeline.results if r.run is not None),
        "<h2>Decisions</h2>",
        _decision_rows(timeline.markers),
        "<h2>Run</h2>",
        f"<table>{facts}</table>",
        "<p>Numbers in the metric charts are the gateway's window stats over the last few "
        "seconds (what the controller reads); the controller decides on everything since the "
        "current stage began, at 95% confidence valid however often it looks.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(path: Path, timeline: Timeline, meta: dict[str, Any]) -> Path:
    """Write the report to ``path``; returns it."""
    path.write_text(html_report(timeline, meta), encoding="utf-8")
    return path
