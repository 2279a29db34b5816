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
    sandbox_config,
    served_by_model,
)
from prometheus_client import CollectorRegistry

from tara.demo.embedded import embedded_stack
from tara.retrain.run import Run, RunState
from tara.sandbox.server import running_sandbox, serving
from tara.state import SharedState
from waiting import eventually

pytestmark = pytest.mark.integration


async def _only_run(state: SharedState) -> Run | None:
    runs = await state.runs.list()
    assert len(runs) <= 1, [r.id for r in runs]
    return runs[0] if runs else None


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

                    await eventually(ended, "the run to end", within=90)
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
        assert [t["trigger"] for t in run.triggers] == ["low_rating"]
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
