"""The live terminal view of ``tara demo``: stage, weight, canary vs stable, decisions.

:func:`render` is a pure function of the runner's :class:`DemoState`; the
command hands its result to a ``rich.live.Live`` after every sample.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tara.demo.runner import DemoState
from tara.demo.timeline import Numbers
from tara.rollout.decisions import DecisionName
from tara.rollout.model import TERMINAL

BAR_WIDTH = 40
DECISION_STYLES: dict[str, str] = {
    DecisionName.START: "bold",
    DecisionName.STAGE_PASSED: "bold blue",
    DecisionName.SUCCEED: "bold green",
    DecisionName.ROLLBACK: "bold red",
    DecisionName.ABORT: "red",
    DecisionName.PAUSE: "yellow",
    DecisionName.STALLED: "yellow",
}
RECENT_DECISIONS = 8


def weight_bar(weight: float, width: int = BAR_WIDTH) -> str:
    """``weight`` (0..1) as a bar of ``width`` cells."""
    filled = round(max(0.0, min(1.0, weight)) * width)
    return "█" * filled + "░" * (width - filled)


def _fmt(value: float | None, fmt: Callable[[float], str]) -> str:
    return "—" if value is None else fmt(value)


def numbers_table(canary: Numbers, stable: Numbers, window: float) -> Table:
    """Canary and stable side by side over the last ``window`` seconds."""
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column(f"last {window:g} s")
    table.add_column("canary", justify="right", style="dark_orange")
    table.add_column("stable", justify="right", style="dodger_blue2")
    rows: list[tuple[str, Callable[[Numbers], str]]] = [
        ("mean rating", lambda n: _fmt(n.rating, lambda v: f"{v:.2f} ({n.ratings})")),
        ("error rate", lambda n: _fmt(n.error_rate, lambda v: f"{v:.1%}")),
        ("p95 latency", lambda n: _fmt(n.p95, lambda v: f"{v * 1000:.0f} ms")),
        ("requests", lambda n: str(n.requests)),
    ]
    for label, cell in rows:
        table.add_row(label, cell(canary), cell(stable))
    return table


def render(state: DemoState) -> RenderableType:
    """The whole view for the current state."""
    parts: list[RenderableType] = [Text(state.note, style="italic")]
    rollout, sample = state.rollout, state.latest
    if rollout is not None:
        live = rollout.phase not in TERMINAL
        stage = "-"
        if live:
            n, total = rollout.stage_index + 1, len(rollout.plan.stages)
            stage = f"stage {n}/{total} ({rollout.stage.weight_bp / 100:g}%)"
        parts.append(
            Text.assemble(
                (f"{rollout.candidate_model}", "bold"),
                f" on {rollout.track}  ",
                (rollout.phase.value, "bold"),
                f"  {stage}",
            )
        )
        weight = rollout.weight_bp / 10_000
        parts.append(Text(f"canary weight {weight_bar(weight)} {weight:.0%}"))
        last = rollout.last_decision
        if live and last is not None and last.decision is DecisionName.HOLD:
            # Holds stay out of the history; this is what the stage still waits for.
            reason = last.reason.splitlines()[0] if last.reason else ""
            parts.append(Text(f"controller holds: {reason}", style="dim"))
    run = state.run
    if run is not None:
        parts.append(
            Text.assemble(
                "fine-tuning run ",
                (run.id, "bold"),
                f" for {run.segment.label}: ",
                (run.state.value, "bold"),
                f"  {run.reason}",
            )
        )
    if sample is not None:
        parts.append(numbers_table(sample.canary, sample.stable, state.options.pace.window))
    markers = state.timeline.events[-RECENT_DECISIONS:]
    if markers:
        decisions = Table(box=None, show_header=False, pad_edge=False)
        for m in markers:
            reason = m.reason.splitlines()[0] if m.reason else ""
            decisions.add_row(
                f"{m.t:5.1f}s",
                m.scenario,
                Text(m.decision, style=DECISION_STYLES.get(m.decision, "")),
                m.actor,
                reason,
            )
        parts.append(Text("decisions", style="bold"))
        parts.append(decisions)
    c = state.counts
    parts.append(
        Text(
            f"students: {c['asked']} questions, {c['answered']} answered, {c['failed']} failed, "
            f"{c['rated']} rated, {c['regenerated']} regenerate taps, {c['repeated']} repeats",
            style="dim",
        )
    )
    for r in state.timeline.results:
        if r.phase is not None or r.error is not None:
            mark = Text("✓", style="green") if r.ok else Text("✗", style="red")
            parts.append(Text.assemble(mark, f" {r.name}: {r.phase or r.error}"))
    scenario = state.scenario.name if state.scenario is not None else "warm-up"
    title = f"tara demo · {scenario} · {state.elapsed:.0f} s"
    return Panel(Group(*parts), title=title, title_align="left")
