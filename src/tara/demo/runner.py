"""Run the demo: sandbox, gateway and controller in this process, students, scenarios in turn.

Nothing outside the process is needed: the sandbox and the gateway listen on
free loopback ports, state is in memory, the interaction log is a SQLite
file in ``data_dir``, keys are the built-in development ones (or whatever the
settings hold). Each scenario starts its rollout through the admin API, as
an operator would, then only watches: every decision is the controller's.
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
    Pace,
    Scenario,
    rollout_settings,
    stats_settings,
)
from tara.demo.students import Classroom, population
from tara.demo.timeline import Marker, Sample, ScenarioResult, Timeline, numbers_from
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

    scenarios: tuple[Scenario, ...]
    pace: Pace
    seed: int = 7


@dataclass
class DemoState:
    """What the live view shows; the runner updates it in place."""

    options: DemoOptions
    timeline: Timeline = field(default_factory=Timeline)
    scenario: Scenario | None = None
    rollout: Rollout | None = None
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
    config = default_config()
    if pace.real_latency:
        return config
    fixed = Latency(ttft_median_ms=10, ttft_sigma=0, token_delay_ms=0)
    models = {n: m.model_copy(update={"latency": fixed}) for n, m in config.models.items()}
    return config.model_copy(update={"models": models})


def demo_settings(settings: Settings, upstream: str, data_dir: Path, pace: Pace) -> Settings:
    """``settings`` made embedded: memory state, SQLite log in ``data_dir``, the sandbox upstream.

    Keys, subjects, languages and the rollout thresholds are kept; stages and
    cadences come from ``pace``.
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
    ) -> None:
        self.state = state
        self.stack = stack
        self.session = session
        self.admin_key = admin_key
        self.on_update = on_update
        self.pace = state.options.pace

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
            )
            state.counts = classroom.counts
            stop = asyncio.Event()
            students = asyncio.create_task(classroom.run(stop))
            try:
                demo = Demo(state, stack, session, cfg.auth.admin_key.get_secret_value(), update)
                state.note = "students are asking questions; everyone is on stable"
                await demo.watch(pace.warmup)
                for scenario in options.scenarios:
                    await demo.run_scenario(scenario)
            finally:
                stop.set()
                await students
    state.note = "done"
    update(state)
    return state


def _ignore(_state: DemoState) -> None:
    """The default update callback."""
