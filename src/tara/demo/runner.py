"""Run the demo: sandbox, gateway and controller in this process, students, scenarios in turn.

Nothing outside the process is needed: the sandbox and the gateway listen on
free loopback ports, state is in memory, the interaction log is a SQLite
file in ``data_dir``, keys are the built-in development ones (or whatever the
settings hold). Each canary scenario starts its rollout through the admin
API, as an operator would, then only watches: every decision is the
controller's. The full loop starts nothing at all: it changes who the
students are and how they rate, and watches the controller's fine-tuning
loop find the weak segment, train, gate and roll out on its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from tara.demo.embedded import Embedded, embedded_stack
from tara.demo.scenario import (
    STABLE_MODEL,
    TRACK,
    AnyScenario,
    LoopScenario,
    Pace,
    Scenario,
    fine_tuning,
    loop_settings,
    rollout_settings,
    stats_settings,
)
from tara.demo.students import Classroom, as_served, population
from tara.demo.timeline import (
    Marker,
    Sample,
    ScenarioResult,
    Timeline,
    describe_step,
    numbers_from,
    trigger_marker,
)
from tara.retrain.operations import cancel_run
from tara.retrain.run import Run, RunState
from tara.rollout.decisions import DecisionName
from tara.rollout.model import TERMINAL, Rollout
from tara.rollout.routing import Segment
from tara.sandbox.config import Latency, SandboxConfig, default_config
from tara.sandbox.server import running_sandbox
from tara.settings import Settings, TrackSettings
from tara.telemetry.window_store import Series
from tara.telemetry.windows import WindowStats

SAMPLE_SECONDS = 0.5
SANDBOX_KEY = "sk-sandbox"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What to run, how fast, and with which seed."""

    scenarios: tuple[AnyScenario, ...]
    pace: Pace
    seed: int = 7


@dataclass
class DemoState:
    """What the live view shows; the runner updates it in place."""

    options: DemoOptions
    timeline: Timeline = field(default_factory=Timeline)
    scenario: AnyScenario | None = None
    rollout: Rollout | None = None
    run: Run | None = None
    """The full loop's fine-tuning run, once the controller started it."""
    latest: Sample | None = None
    counts: Counter[str] = field(default_factory=Counter)
    note: str = "starting the sandbox, the gateway and the controller"
    started: float = field(default_factory=time.time)

    @property
    def elapsed(self) -> float:
        """Seconds since the demo began."""
        return time.time() - self.started


Update = Callable[[DemoState], None]


def sandbox_config(pace: Pace) -> SandboxConfig:
    """The built-in models; with a quick pace, a fixed 10 ms first token and no token delay."""
    config = default_config().model_copy(update={"fine_tuning": fine_tuning(pace)})
    if pace.real_latency:
        return config
    fixed = Latency(ttft_median_ms=10, ttft_sigma=0, token_delay_ms=0)
    models = {n: m.model_copy(update={"latency": fixed}) for n, m in config.models.items()}
    return config.model_copy(update={"models": models})


def demo_settings(settings: Settings, upstream: str, data_dir: Path, pace: Pace) -> Settings:
    """``settings`` made embedded: memory state, SQLite log in ``data_dir``, the sandbox upstream.

    Keys, subjects, languages and the rollout thresholds are kept; stages and
    cadences, and the fine-tuning loop's clocks, come from ``pace``.
    """
    return settings.model_copy(
        update={
            "state_backend": "memory",
            "redis_url": None,
            "database_url": None,
            "routing_refresh_seconds": 0.1,
            "tracks": {TRACK: TrackSettings(stable_model=STABLE_MODEL, description="demo")},
            "upstream": settings.upstream.model_copy(
                update={"base_url": upstream, "api_key": SecretStr(SANDBOX_KEY)}
            ),
            "telemetry": settings.telemetry.model_copy(
                update={"sqlite_path": data_dir / "interactions.db"}
            ),
            "stats": stats_settings(settings.stats),
            "rollout": rollout_settings(pace, settings.rollout),
            **loop_settings(pace, upstream, data_dir, settings.finetune),
        }
    )


async def model_qualities(session: aiohttp.ClientSession, upstream: str) -> dict[str, float]:
    """Each sandbox model's quality, from its ``GET /v1/models`` (what students' ratings follow)."""
    headers = {"Authorization": f"Bearer {SANDBOX_KEY}"}
    async with session.get(f"{upstream}/models", headers=headers) as response:
        response.raise_for_status()
        data = await response.json()
    return {m["id"]: float(m["quality"]) for m in data["data"]}


class Demo:
    """One demo run over a running stack (see :func:`run_demo`)."""

    def __init__(
        self,
        state: DemoState,
        stack: Embedded,
        session: aiohttp.ClientSession,
        admin_key: str,
        on_update: Update,
        classroom: Classroom | None = None,
    ) -> None:
        self.state = state
        self.stack = stack
        self.session = session
        self.admin_key = admin_key
        self.on_update = on_update
        self.pace = state.options.pace
        self.classroom = classroom

    async def sample(self) -> None:
        """Record both variants' recent numbers and the rollout's stage and weight."""
        state, now = self.state, time.time()
        rollout = state.rollout
        segment = rollout.segment.label if rollout is not None else Segment(None, None).label
        canary, stable = Series(TRACK, segment, "canary"), Series(TRACK, segment, "stable")
        since = now - self.pace.window
        stats = await self.stack.windows.read_many((stable,), since, now)
        if rollout is not None:
            # The canary series is per segment, not per rollout: start at this rollout.
            since = max(since, rollout.created_at)
        stats.update(await self.stack.windows.read_many((canary,), since, now))
        live = rollout is not None and rollout.phase not in TERMINAL
        sample = Sample(
            t=now - state.started,
            scenario=state.scenario.name if state.scenario is not None else "",
            phase=rollout.phase.value if rollout is not None else "none",
            stage=rollout.stage_index + 1 if rollout is not None and live else 0,
            weight=rollout.weight_bp / 10_000 if rollout is not None else 0.0,
            canary=numbers_from(stats.get(canary, WindowStats())),
            stable=numbers_from(stats.get(stable, WindowStats())),
        )
        state.timeline.samples.append(sample)
        state.latest = sample
        self.on_update(state)

    async def watch(self, seconds: float, result: ScenarioResult | None = None) -> None:
        """Sample for ``seconds`` (or until the rollout of ``result`` ends)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if result is not None and result.rollout_id is not None:
                rollout = await self.stack.service.get(result.rollout_id)
                self.state.rollout = rollout
                self._note_decisions(rollout, result)
                if rollout.phase in TERMINAL:
                    return
            await self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def _note_decisions(self, rollout: Rollout, result: ScenarioResult) -> None:
        stages = tuple(s.weight_bp / 10_000 for s in rollout.plan.stages)
        weights = decision_weights([d.decision for d in rollout.history], stages)
        noted = len(result.markers)
        for decision, weight in list(zip(rollout.history, weights, strict=True))[noted:]:
            t = decision.at - self.state.started
            result.markers.append(
                Marker(t, result.name, decision.decision, decision.actor, decision.reason, weight)
            )

    async def start_rollout(self, scenario: Scenario) -> str:
        """``POST /admin/rollouts``, as ``tara rollout start`` does; the rollout's id."""
        body = {"track": TRACK, "candidate": scenario.candidate, "actor": "demo"}
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        url = f"{self.stack.base_url}/admin/rollouts"
        async with self.session.post(url, json=body, headers=headers) as response:
            data = await response.json()
            if response.status != 201:
                msg = f"starting the rollout failed ({response.status}): {data}"
                raise RuntimeError(msg)
        return str(data["id"])

    async def run_scenario(self, scenario: Scenario) -> ScenarioResult:
        """Start the scenario's rollout and watch it to its end (or the time limit)."""
        state = self.state
        result = ScenarioResult(
            scenario.name, scenario.candidate, scenario.expected.value, scenario.story
        )
        state.timeline.results.append(result)
        state.scenario, state.rollout = scenario, None
        state.note = scenario.story
        result.started = state.elapsed
        try:
            result.rollout_id = await self.start_rollout(scenario)
        except (RuntimeError, aiohttp.ClientError) as exc:
            result.error = str(exc)
            return result
        await self.watch(self.pace.time_limit, result)
        rollout = await self.stack.service.get(result.rollout_id)
        if rollout.phase not in TERMINAL:
            result.error = f"no verdict within {self.pace.time_limit:.0f}s; aborted"
            rollout = await self.stack.service.abort(
                rollout.id, actor="demo", reason="demo time limit"
            )
        state.rollout = rollout
        self._note_decisions(rollout, result)
        result.phase = rollout.phase.value
        result.ended = state.elapsed
        result.final_weight = rollout.weight_bp / 10_000
        table = await self.stack.service.routing.load_table()
        route = table.tracks.get(TRACK) if table is not None else None
        result.stable_model = route.stable_model if route is not None else STABLE_MODEL
        state.note = f"{scenario.name}: {rollout.phase.value}; watching where students go"
        await self.watch(self.pace.tail)
        return result

    async def run_loop_scenario(self, scenario: LoopScenario) -> ScenarioResult:
        """Make one segment unhappy and watch the loop fix it on its own (or the time limit)."""
        state, classroom = self.state, self.classroom
        assert classroom is not None
        result = ScenarioResult(
            scenario.name, "a fine-tune by the loop", scenario.expected, scenario.story
        )
        state.timeline.results.append(result)
        state.scenario, state.rollout, state.run = scenario, None, None
        state.note = scenario.story
        result.started = state.elapsed
        since = time.time()
        everyone, served_before = classroom.students, Counter(classroom.served)
        mix = [
            ((scenario.weak.subject or "", scenario.weak.language or ""), scenario.weak_share),
            (
                (scenario.bystander.subject or "", scenario.bystander.language or ""),
                1 - scenario.weak_share,
            ),
        ]
        classroom.students = population(
            random.Random(state.options.seed), self.pace.students, mix, prefix="loop-student"
        )
        classroom.perceived = scenario.quality
        try:
            run = await self._follow_run(scenario, result, since)
        finally:
            classroom.students, classroom.perceived = everyone, as_served
        result.phase = run.state.value if run is not None else None
        result.ended = state.elapsed
        result.served = _served_since(classroom.served, served_before, scenario)
        if run is not None:
            result.run = run.to_dict()
            result.candidate = run.fine_tuned_model or result.candidate
            result.final_weight = state.rollout.weight_bp / 10_000 if state.rollout else 0.0
        result.stable_model = await self.stack.service.stable_model(TRACK, scenario.weak)
        state.note = f"{scenario.name}: {result.phase or result.error}; watching where students go"
        await self.watch(self.pace.tail)
        return result

    async def _follow_run(
        self, scenario: LoopScenario, result: ScenarioResult, since: float
    ) -> Run | None:
        """Watch for the segment's run and follow it to its end; cancel it at the time limit."""
        runs, limit = self.stack.state.runs, self.pace.loop_time_limit
        deadline = time.monotonic() + limit
        run: Run | None = None
        while time.monotonic() < deadline:
            mine = [r for r in await runs.list() if r.created_at >= since]
            run = next((r for r in mine if r.segment == scenario.weak), None)
            if run is not None:
                await self._note_run(run, result)
                if not run.open:
                    return run
            await self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)
        if run is None:
            result.error = f"no run started within {limit:.0f}s"
            return None
        result.error = f"run {run.id} still {run.state.value} after {limit:.0f}s"
        await cancel_run(runs, run.id, "demo", "demo time limit", time.time())
        return run

    async def _note_run(self, run: Run, result: ScenarioResult) -> None:
        """Markers for the run's new steps (the trigger first), then its canary's decisions."""
        state = self.state
        state.run = run
        if run.rollout_id is not None:
            rollout = await self.stack.service.get(run.rollout_id)
            state.rollout = rollout
            self._note_decisions(rollout, result)
        if not result.steps:
            result.steps.append(trigger_marker(run, result.name, state.started))
        for step in run.steps[len(result.steps) - 1 :]:
            t = step.at - state.started
            # The canary's weight then: that of its latest decision before the step.
            weight = next((m.weight for m in reversed(result.markers) if m.t <= t), 0.0)
            reason = describe_step(step)
            result.steps.append(Marker(t, result.name, step.state, step.actor, reason, weight))
        if run.state is RunState.CANCELLED and result.error is None:
            result.error = run.reason


def _served_since(
    now: Counter[tuple[str, str, str]],
    before: Counter[tuple[str, str, str]],
    scenario: LoopScenario,
) -> dict[str, dict[str, int]]:
    """Answers per model during the scenario, for its weak and its bystander segment."""
    out: dict[str, dict[str, int]] = {}
    for segment in (scenario.weak, scenario.bystander):
        models: Counter[str] = Counter()
        for (subject, language, model), n in (now - before).items():
            if segment.matches(subject, language):
                models[model] += n
        out[segment.label] = dict(sorted(models.items()))
    return out


def decision_weights(decisions: Sequence[str], stages: Sequence[float]) -> list[float]:
    """Canary weight right after each decision of a rollout's history, given its stage weights.

    Worked out from the history rather than read from the rollout, because two
    decisions can land between two looks of the demo.
    """
    weights: list[float] = []
    stage, weight = 0, 0.0
    for decision in decisions:
        if decision == DecisionName.START:
            stage, weight = 0, stages[0]
        elif decision in (DecisionName.STAGE_PASSED, DecisionName.PROMOTE):
            stage += 1
            weight = stages[stage] if stage < len(stages) else 1.0
        elif decision == DecisionName.SUCCEED:
            weight = 1.0
        elif decision in (DecisionName.ROLLBACK, DecisionName.ABORT):
            weight = 0.0
        weights.append(weight)  # pause, resume, error, stalled: unchanged
    return weights


async def run_demo(
    settings: Settings,
    options: DemoOptions,
    data_dir: Path,
    on_update: Update | None = None,
) -> DemoState:
    """Run every scenario of ``options`` back to back on one stack; the final state."""
    state = DemoState(options)
    update = on_update if on_update is not None else _ignore
    pace = options.pace
    async with running_sandbox(sandbox_config(pace), seed=options.seed) as upstream:
        cfg = demo_settings(settings, upstream, data_dir, pace)
        client_key = cfg.auth.client_keys[0].get_secret_value() if cfg.auth.client_keys else ""
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=pace.max_in_flight + 16)
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
            embedded_stack(cfg) as stack,
        ):
            qualities = await model_qualities(session, upstream)
            rng = random.Random(options.seed)
            classroom = Classroom(
                session,
                stack.base_url,
                TRACK,
                qualities,
                population(rng, pace.students),
                pace.arrival_rate,
                options.seed,
                headers={"Authorization": f"Bearer {client_key}"},
                max_in_flight=pace.max_in_flight,
                refresh=lambda: model_qualities(session, upstream),
            )
            state.counts = classroom.counts
            stop = asyncio.Event()
            students = asyncio.create_task(classroom.run(stop))
            try:
                admin_key = cfg.auth.admin_key.get_secret_value()
                demo = Demo(state, stack, session, admin_key, update, classroom)
                state.note = "students are asking questions; everyone is on stable"
                await demo.watch(pace.warmup)
                for scenario in options.scenarios:
                    if isinstance(scenario, LoopScenario):
                        await demo.run_loop_scenario(scenario)
                    else:
                        await demo.run_scenario(scenario)
            finally:
                stop.set()
                await students
    state.note = "done"
    update(state)
    return state


def _ignore(_state: DemoState) -> None:
    """The default update callback."""
