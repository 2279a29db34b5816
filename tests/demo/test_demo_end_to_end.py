"""``tara demo`` end to end: real sandbox, gateway, controller and students on loopback ports.

The quick pace (40/50/60% stages of a second or two, a 10 ms upstream) runs
the same statistics as the default in ~40 s for all three scenarios; the
default pace is timed by hand (under two minutes), not here.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tara.cli import main
from tara.demo.command import DecisionPrinter
from tara.demo.runner import DemoOptions, DemoState, run_demo
from tara.demo.scenario import PACES, SCENARIOS
from tara.demo.view import render
from tara.settings import Settings

pytestmark = pytest.mark.integration


def test_tara_demo_rolls_back_the_bad_canary_promotes_the_good_one_and_closes_the_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    code = main(["demo", "--pace", "quick", "--json", "--seed", "3", "--report", str(report)])
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert code == 0, out
    assert summary["ok"] is True
    assert summary["report"] == str(report)
    bad, good, loop = summary["scenarios"]
    assert (bad["scenario"], bad["outcome"], bad["ok"]) == ("bad-canary", "rolled_back", True)
    assert [d["decision"] for d in bad["decisions"]] == ["start", "rollback"]
    assert bad["decisions"][-1]["actor"] == "controller"
    assert bad["stable_model"] == "tara-stable"
    assert bad["final_canary_weight"] == 0.0
    assert (good["scenario"], good["outcome"], good["ok"]) == ("good-canary", "succeeded", True)
    assert [d["decision"] for d in good["decisions"]] == ["start", "advance", "advance", "succeed"]
    assert [d["weight"] for d in good["decisions"]] == [0.4, 0.5, 0.6, 1.0]
    assert good["stable_model"] == "tara-candidate-good"
    # The loop: the trigger fired for Hindi math, and a run went all the way by itself.
    assert (loop["scenario"], loop["outcome"], loop["ok"]) == ("full-loop", "promoted", True)
    assert [s["decision"] for s in loop["steps"]] == [
        "trigger",
        "pending",
        "prepared",
        "uploaded",
        "training",
        "trained",
        "evaluated",
        "canary",
        "promoted",
    ]
    run = loop["run"]
    assert run["segment"] == "math:hi"
    assert run["triggers"][0]["trigger"] == "low_rating"
    assert run["gate"]["outcome"] == "pass"
    assert run["stable_model"] == "tara-candidate-good"  # the good canary's promotion
    assert [d["decision"] for d in loop["decisions"]] == ["start", "advance", "advance", "succeed"]
    assert loop["stable_model"] == run["fine_tuned_model"] == loop["candidate"]
    assert set(loop["served"]["physics:en"]) == {"tara-candidate-good"}  # untouched
    assert run["fine_tuned_model"] in loop["served"]["math:hi"]
    students = summary["students"]
    assert students["rated"] > 500
    assert students["variant:canary"] > 0
    assert students["regenerated"] > 0
    page = report.read_text(encoding="utf-8")
    assert page.count("<svg") == 5
    assert f"The loop: run {run['id']} for math:hi, promoted" in page
    assert ">rollback<" in page
    assert ">succeed<" in page
    assert "every scenario ended as expected" in page


async def test_a_rollout_without_a_verdict_in_time_is_aborted_and_the_run_fails(
    tmp_path: Path,
) -> None:
    """Also drives the live view and the decision printer with real states."""
    pace = dataclasses.replace(PACES["quick"], warmup=0.3, time_limit=1.0, tail=0.2)
    options = DemoOptions((SCENARIOS["good-canary"],), pace, seed=5)
    screen = io.StringIO()
    console = Console(file=screen, width=160, color_system=None)
    printer = DecisionPrinter(console)
    views: list[str] = []

    def update(state: DemoState) -> None:
        printer(state)
        view = Console(record=True, width=160, color_system=None)
        view.print(render(state))
        views.append(view.export_text())

    state = await run_demo(Settings(), options, tmp_path, update)
    (result,) = state.timeline.results
    assert not state.timeline.ok
    assert result.phase == "aborted"
    assert result.error is not None
    assert "no verdict" in result.error
    assert [m.decision for m in result.markers] == ["start", "abort"]
    assert "tara-candidate-good on tara-tutor" in "".join(views)
    assert "stage 1/3 (40%)" in "".join(views)
    assert "controller holds: " in "".join(views)
    lines = screen.getvalue().splitlines()
    assert "start" in lines[0]
    assert "abort" in lines[1]
    assert (tmp_path / "interactions.db").exists()
