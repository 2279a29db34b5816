"""``tara demo``'s CLI glue: arguments, report location, summary."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from tara.cli import build_parser
from tara.demo.command import REPORT_NAME, default_report_path, print_summary, summary
from tara.demo.runner import DemoOptions, DemoState
from tara.demo.scenario import PACES, SCENARIOS
from tara.demo.timeline import ScenarioResult


def test_the_defaults_run_both_scenarios_at_the_real_pace_with_the_live_view() -> None:
    args = build_parser().parse_args(["demo"])
    assert (args.scenario, args.seed, args.pace) == ("all", 7, "real")
    assert (args.json, args.no_live, args.report) == (False, False, None)
    assert args._target == "tara.demo.command:demo_command"


def test_the_report_goes_to_the_working_directory_or_else_the_temp_directory(
    tmp_path: Path,
) -> None:
    assert default_report_path(tmp_path) == tmp_path / REPORT_NAME
    missing = tmp_path / "gone"
    assert default_report_path(missing) == Path(tempfile.gettempdir()) / REPORT_NAME


def _state() -> DemoState:
    state = DemoState(DemoOptions((SCENARIOS["bad-canary"],), PACES["real"], seed=11))
    result = ScenarioResult("bad-canary", "tara-candidate-bad", "rolled_back", "story")
    result.phase, result.started, result.ended = "rolled_back", 4.0, 14.5
    result.stable_model = "tara-stable"
    state.timeline.results.append(result)
    state.counts["asked"] = 12
    return state


def test_the_summary_says_what_happened_and_where_the_report_is(tmp_path: Path) -> None:
    data = summary(_state(), 61.23, tmp_path / "r.html")
    assert data["ok"] is True
    assert (data["seed"], data["pace"], data["wall_seconds"]) == (11, "real", 61.2)
    assert data["stages_percent"] == [10, 25, 50]
    assert data["scenarios"][0]["seconds"] == 10.5
    assert data["students"] == {"asked": 12}
    console = Console(record=True, width=200, color_system=None)
    print_summary(console, data)
    text = console.export_text()
    assert "✓ bad-canary: tara-candidate-bad rolled_back after 10.5 s" in text
    assert "every scenario ended as expected; 61.2 s in all." in text
    assert f"report: {tmp_path / 'r.html'}" in text
