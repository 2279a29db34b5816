"""The whole loop offline, on second-scale clocks: a trigger ends as a promoted Hindi-math canary.

``tara sandbox`` serves chat, fine-tuning and the judge; the gateway and
the controller (with its fine-tuning loop) run on one memory state, as in
``tara demo``. Hindi-math students rate the stable model poorly; nobody
starts anything by hand: the quality trigger fires, the run prepares the
Hindi-math slice of the log, trains in the sandbox, passes the gate against
the segment's stable model, and its canary, scoped to Hindi math, is
promoted. The gateway's own record (the interaction log) must show that no
other segment's request ever reached the new model.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from loop_harness import (
    EN_PHYSICS,
    HI_MATH,
    Hooks,
    Students,
    asking,
    gateway_client,
    loop_settings,
    poor_stable_hindi_math,
    sandbox_config,
    served_by_model,
)
from prometheus_client import CollectorRegistry

from tara.demo.embedded import embedded_stack
from tara.retrain.run import Run, RunState
from tara.sandbox.config import FineTuningConfig
from tara.sandbox.server import running_sandbox, serving
from tara.state import SharedState
from waiting import eventually

pytestmark = pytest.mark.integration


async def _only_run(state: SharedState) -> Run | None:
    runs = await state.runs.list()
    assert len(runs) <= 1, [
        (r.id, r.segment, r.state, r.reason, [(s.state.value, s.at) for s in r.steps]) for r in runs
    ]
    return runs[0] if runs else None


async def _runs(state: SharedState) -> list[tuple[str, str, list[str]]]:
    """Where each run stands, for a failure message."""
    return [
        (r.id, r.state.value, [s.state.value for s in r.steps]) for r in await state.runs.list()
    ]


async def test_a_poorly_rated_segment_is_retrained_and_promoted_with_nobody_in_between(
    tmp_path: Path,
) -> None:
    hooks = Hooks()
    registry = CollectorRegistry()
    async with (
        running_sandbox(sandbox_config(), seed=3) as upstream,
        serving(hooks.app()) as hook_port,
    ):
        settings = loop_settings(tmp_path, upstream)
        rollout = settings.rollout.model_copy(
            update={"webhooks": [f"http://127.0.0.1:{hook_port}/hooks"]}
        )
        settings = settings.model_copy(update={"rollout": rollout})
        started = time.monotonic()
        async with embedded_stack(settings, registry) as stack:
            state = stack.state
            async with gateway_client(stack.base_url) as client:
                students = Students(client)
                async with asking(students):

                    async def ended() -> bool:
                        run = await _only_run(state)
                        return run is not None and not run.open

                    await eventually(
                        ended, "the run to end", within=240, status=lambda: _runs(state)
                    )
            run = await _only_run(state)
        assert run is not None
        steps = [(s.state.value, round(s.at - run.created_at, 1)) for s in run.steps]
        print(f"loop: {time.monotonic() - started:.1f} s; run steps (s after its start): {steps}")
        assert run.state is RunState.PROMOTED, run.reason
        assert [s.state for s in run.steps] == [
            RunState.PENDING,
            RunState.PREPARED,
            RunState.UPLOADED,
            RunState.TRAINING,
            RunState.TRAINED,
            RunState.EVALUATED,
            RunState.CANARY,
            RunState.PROMOTED,
        ]
        assert run.segment.label == "math:hi"
        # Rated poorly throughout: its grade and topic cells are knowledge gaps too.
        assert [t["trigger"] for t in run.triggers] == ["low_rating", "knowledge_gap"]
        assert run.triggers[1]["evidence"]["gaps"]
        trigger = run.triggers[0]
        assert trigger["value"] < trigger["threshold"] == 3.5
        assert trigger["evidence"]["ratings"] >= 20
        assert trigger["window_seconds"] == 30
        assert run.gate is not None
        assert run.gate["outcome"] == "pass"
        assert run.stable_model == "tara-stable"
        model = run.fine_tuned_model
        assert model is not None
        assert model.startswith("ft:")

        # Only Hindi-math students ever got the new model, by the gateway's record.
        assert await served_by_model(settings, model) == {HI_MATH}
        assert {(s, m) for s, _, m in students.served if s == EN_PHYSICS} == {
            (EN_PHYSICS, "tara-stable")
        }
        assert students.failures == 0

    assert hooks.run_states(run.id) == [s.state.value for s in run.steps]
    fired = [e for e in hooks.events if e["event"] == "trigger_fired"]
    assert any(e["outcome"] == "started" and e["run_id"] == run.id for e in fired)
    assert registry.get_sample_value("tara_finetune_runs_total", {"status": "promoted"}) == 1
    assert registry.get_sample_value("tara_trigger_fired_total", {"trigger": "low_rating"}) >= 1


def _ft_disliked(segment: tuple[str, str], model: str, rng: random.Random) -> int:
    """The fine-tuned model turns out worse with students than the poor stable one."""
    if model.startswith("ft:"):
        return 1
    return poor_stable_hindi_math(segment, model, rng)


async def test_a_model_that_fails_the_gate_is_rejected_and_reaches_no_student(
    tmp_path: Path,
) -> None:
    # Tuned from the bad candidate's behaviour (quality 0.40, a fifth of answers fail),
    # with nothing gained: the gate must say no.
    tuning = FineTuningConfig(
        training_seconds=0.5, template_model="tara-candidate-bad", max_quality_gain=0.0
    )
    async with running_sandbox(sandbox_config(tuning), seed=3) as upstream:
        settings = loop_settings(tmp_path, upstream)
        async with embedded_stack(settings, CollectorRegistry()) as stack:
            async with gateway_client(stack.base_url) as client, asking(Students(client)):
                await eventually(
                    lambda: _ended(stack.state),
                    "the run to end",
                    within=240,
                    status=lambda: _runs(stack.state),
                )
            run = await _only_run(stack.state)
            assert await stack.service.list() == []
        assert run is not None
        assert run.state is RunState.REJECTED, run.reason
        assert run.steps[-2].state is RunState.TRAINED
        assert run.gate is not None
        assert run.gate["outcome"] == "fail"
        assert run.reason.startswith(f"gate fail for {run.fine_tuned_model} against tara-stable")
        failed = {c["name"] for c in run.gate["checks"] if not c["passed"]}
        assert "accuracy" in failed
        assert run.rollout_id is None
        assert run.fine_tuned_model is not None
        assert await served_by_model(settings, run.fine_tuned_model) == set()


async def test_a_rolled_back_canary_keeps_its_segment_cooling_down(tmp_path: Path) -> None:
    async with running_sandbox(sandbox_config(), seed=3) as upstream:
        settings = loop_settings(tmp_path, upstream)
        async with embedded_stack(settings, CollectorRegistry()) as stack:
            state = stack.state
            async with (
                gateway_client(stack.base_url) as client,
                asking(Students(client, taste=_ft_disliked)),
            ):
                await eventually(
                    lambda: _ended(state), "the run to end", within=240, status=lambda: _runs(state)
                )
                run = await _only_run(state)
                assert run is not None
                assert run.rollout_id is not None, (run.state, run.reason)
                assert run.ended_at is not None
                ended_at = run.ended_at

                async def looked_again() -> bool:
                    ledger = (await state.ledger.load()).ledger
                    return ledger.checked_at is not None and ledger.checked_at > ended_at

                async def ledger_status() -> str:
                    ledger = (await state.ledger.load()).ledger
                    return f"ended at {ended_at:.3f}, ledger checked at {ledger.checked_at}"

                # A look evaluates the rules over the whole log in a thread beside the
                # gateway, which the students keep busy: on a loaded machine that takes
                # seconds, so the wait is for the look, not for a time.
                await eventually(
                    looked_again,
                    "a trigger look after the rollback",
                    within=60,
                    status=ledger_status,
                )
            ledger = (await state.ledger.load()).ledger
            assert len(await state.runs.list()) == 1
            rollout = await stack.service.get(run.rollout_id)
        assert run.state is RunState.ROLLED_BACK, run.reason
        assert rollout.phase.value == "rolled_back"
        assert rollout.history[-1].actor == "controller"
        assert "rating drop" in run.reason
        [decision] = [d for d in ledger.decisions if d["segment"] == "math:hi"]
        assert not decision["start"]
        assert decision["reason"].startswith("cooling down for 1")  # 14 days, give or take
        assert "low_rating" in decision["triggers"]  # students still rate stable poorly
        assert decision["cooldown_until"] >= ended_at + 14 * 86_400


async def _ended(state: SharedState) -> bool:
    run = await _only_run(state)
    return run is not None and not run.open
