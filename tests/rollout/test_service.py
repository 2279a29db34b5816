"""RolloutService against memory and real-Redis stores: transitions, conflicts, routing sync."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import pytest
import redis.asyncio as aioredis

from tara.rollout import model
from tara.rollout.config import RolloutSettings, StageSettings
from tara.rollout.decide import step
from tara.rollout.model import Phase, Rollout, TransitionError
from tara.rollout.rollout_store import RolloutStore
from tara.rollout.rollout_store_memory import MemoryRolloutStore
from tara.rollout.rollout_store_redis import RedisRolloutStore, leader_token_key
from tara.rollout.routing import RoutingTable, Segment, TrackRoute, route
from tara.rollout.routing_store import RoutingStore, RoutingStoreError
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.rollout.routing_store_redis import RedisRoutingStore
from tara.rollout.service import (
    RolloutConflict,
    RolloutNotFound,
    RolloutService,
    UnknownTrack,
)

SETTINGS = RolloutSettings(
    stages=[
        StageSettings(percent=10, duration=60, min_requests=0, min_ratings=0),
        StageSettings(percent=50, duration=60, min_requests=0, min_ratings=0),
    ]
)
TRACK = "tara-tutor"
STABLE = {TRACK: "tara-stable", "tara-quiz": "quiz-stable"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@dataclass
class Env:
    rollouts: RolloutStore
    routing: RoutingStore
    service: RolloutService
    bump_leader: object = None

    async def table(self) -> RoutingTable:
        return await self.routing.load_table() or RoutingTable()

    async def track(self, name: str = TRACK) -> TrackRoute:
        return (await self.table()).tracks[name]

    def other_service(self) -> RolloutService:
        """A second service on the same stores (another replica's admin API)."""
        return RolloutService(self.rollouts, self.routing, SETTINGS, STABLE, clock=Clock())


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def env(request: pytest.FixtureRequest) -> Env:
    if request.param == "memory":
        rollouts: RolloutStore = MemoryRolloutStore()
        routing: RoutingStore = MemoryRoutingStore()
    else:
        client: aioredis.Redis = request.getfixturevalue("redis_client")
        namespace: str = request.getfixturevalue("namespace")
        rollouts = RedisRolloutStore(client, namespace)
        routing = RedisRoutingStore(client, namespace)
    service = RolloutService(rollouts, routing, SETTINGS, STABLE, clock=Clock())
    return Env(rollouts, routing, service)


async def test_start_runs_stage_one_and_routes_the_segment(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1", subject="math", actor="alice")
    assert (r.phase, r.stage_index, r.weight_bp) == (Phase.PROGRESSING, 0, 1000)
    assert (r.track, r.segment, r.stable_model, r.candidate_model) == (
        TRACK,
        Segment("math"),
        "tara-stable",
        "ft-1",
    )
    assert r.id.startswith("ro-")
    assert [(d.decision, d.actor) for d in r.history] == [("start", "alice")]
    assert await env.service.get(r.id) == r
    canary = (await env.track()).canaries
    assert [(c.rollout_id, c.model, c.weight_bp, c.salt) for c in canary] == [
        (r.id, "ft-1", 1000, r.salt)
    ]
    assert (await env.table()).version == 1


async def test_start_refuses_bad_input(env: Env) -> None:
    with pytest.raises(UnknownTrack, match=r"gpt-4.*tara-quiz, tara-tutor"):
        await env.service.start("gpt-4", "ft-1")
    with pytest.raises(ValueError, match="non-empty"):
        await env.service.start(TRACK, "  ")
    with pytest.raises(ValueError, match="segment subject"):
        await env.service.start(TRACK, "ft-1", subject="a:b")
    with pytest.raises(ValueError, match="already the stable model"):
        await env.service.start(TRACK, "tara-stable")
    assert await env.service.list() == []


async def test_overlapping_segments_are_refused_and_disjoint_ones_run_side_by_side(
    env: Env,
) -> None:
    math = await env.service.start(TRACK, "ft-math", subject="math")
    tamil_physics = await env.service.start(TRACK, "ft-tp", subject="physics", language="ta")
    quiz = await env.service.start("tara-quiz", "ft-quiz")  # another track: no conflict
    with pytest.raises(RolloutConflict, match=f"{math.id}.*math:\\*.*overlaps \\*:hi"):
        await env.service.start(TRACK, "ft-hi", language="hi")
    with pytest.raises(RolloutConflict, match=tamil_physics.id):
        await env.service.start(TRACK, "ft-phys", subject="physics")
    assert {r.id for r in await env.service.list(active_only=True)} == {
        math.id,
        tamil_physics.id,
        quiz.id,
    }
    assert {c.rollout_id for c in (await env.track()).canaries} == {math.id, tamil_physics.id}
    await env.service.pause(math.id)  # a paused rollout still holds its segment
    with pytest.raises(RolloutConflict):
        await env.service.start(TRACK, "ft-2", subject="math")
    await env.service.rollback(math.id)
    again = await env.service.start(TRACK, "ft-2", subject="math")
    assert again.phase is Phase.PROGRESSING


async def test_concurrent_overlapping_starts_one_wins(env: Env) -> None:
    results = await asyncio.gather(
        env.service.start(TRACK, "ft-a", subject="math"),
        env.other_service().start(TRACK, "ft-b"),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, Rollout)]
    lost = [r for r in results if isinstance(r, RolloutConflict)]
    assert (len(won), len(lost)) == (1, 1), results
    records = await env.service.list()
    assert [r.id for r in records if r.phase is Phase.PROGRESSING] == [won[0].id]
    assert all(r.phase is Phase.ABORTED for r in records if r.id != won[0].id)
    assert [c.rollout_id for c in (await env.track()).canaries] == [won[0].id]


async def test_a_start_that_raced_past_the_first_check_yields(env: Env) -> None:
    """B starts completely while A is saving its pending record: A sees B running and yields."""
    original_save = env.rollouts.save
    inner: list[Rollout] = []
    racing = [False]

    async def racing_save(rollout: Rollout, expected: int, fence: int | None = None) -> bool:
        if rollout.candidate_model == "ft-a" and not racing[0]:
            racing[0] = True
            inner.append(await env.other_service().start(TRACK, "ft-b", language="hi"))
        return await original_save(rollout, expected, fence)

    env.rollouts.save = racing_save  # type: ignore[method-assign]
    with pytest.raises(RolloutConflict, match="overlaps math") as refused:
        await env.service.start(TRACK, "ft-a", subject="math")
    assert inner[0].id in str(refused.value)
    records = {r.candidate_model: r.phase for r in await env.service.list()}
    assert records == {"ft-a": Phase.ABORTED, "ft-b": Phase.PROGRESSING}
    assert [c.model for c in (await env.track()).canaries] == ["ft-b"]


async def test_unscoped_success_makes_the_candidate_the_track_stable(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    r = await env.service.promote(r.id, reason="looks great")
    assert (r.stage_index, r.weight_bp) == (1, 5000)
    assert (await env.track()).canaries[0].weight_bp == 5000
    assert r.history[-1].reason == "promoted by hand: looks great"
    r = await env.service.promote(r.id)
    assert r.phase is Phase.SUCCEEDED
    assert await env.track() == TrackRoute("ft-1")
    nxt = await env.service.start(TRACK, "ft-2")
    assert nxt.stable_model == "ft-1"
    with pytest.raises(TransitionError, match=f"cannot promote: rollout {r.id} is succeeded"):
        await env.service.promote(r.id)


async def test_segment_success_pins_the_segment(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-math", subject="math")
    await env.service.promote(r.id)
    await env.service.promote(r.id)
    table = await env.table()
    for subject, expected in [("math", "ft-math"), ("physics", "tara-stable")]:
        got = route(table, TRACK, "student-1", subject, "hi")
        assert got is not None
        assert (got.variant, got.model) == ("stable", expected)
    nxt = await env.service.start(TRACK, "ft-math-2", subject="math")
    assert nxt.stable_model == "ft-math"
    whole = await env.service.start(TRACK, "ft-all", subject="chemistry")
    assert whole.stable_model == "tara-stable"


async def test_pause_resume_rollback(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1", language="ta")
    paused = await env.service.pause(r.id, reason="exam week")
    assert paused.phase is Phase.PAUSED
    assert (await env.track()).canaries[0].weight_bp == 1000
    with pytest.raises(TransitionError, match="cannot pause"):
        await env.service.pause(r.id)
    resumed = await env.service.resume(r.id)
    assert resumed.phase is Phase.PROGRESSING
    version = (await env.table()).version
    back = await env.service.rollback(r.id, actor="bob", reason="students complain")
    assert back.phase is Phase.ROLLED_BACK
    assert (back.history[-1].actor, back.history[-1].reason) == ("bob", "students complain")
    assert (await env.track()).canaries == ()
    assert (await env.table()).version == version + 1  # pause and resume wrote no table
    with pytest.raises(TransitionError, match="rolled_back"):
        await env.service.promote(r.id)
    with pytest.raises(TransitionError):
        await env.service.resume(r.id)


async def test_abort_removes_the_route(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    aborted = await env.service.abort(r.id, reason="superseded")
    assert aborted.phase is Phase.ABORTED
    assert (await env.track()).canaries == ()


async def test_unknown_rollout_is_not_found(env: Env) -> None:
    with pytest.raises(RolloutNotFound, match="ro-nope"):
        await env.service.get("ro-nope")
    with pytest.raises(RolloutNotFound):
        await env.service.rollback("ro-nope")


async def test_list_filters(env: Env) -> None:
    a = await env.service.start(TRACK, "ft-a", subject="math")
    b = await env.service.start("tara-quiz", "ft-b")
    await env.service.rollback(a.id)
    c = await env.service.start(TRACK, "ft-c", subject="math")
    assert [r.id for r in await env.service.list()] == [a.id, b.id, c.id]
    assert [r.id for r in await env.service.list(TRACK)] == [a.id, c.id]
    assert [r.id for r in await env.service.list(TRACK, active_only=True)] == [c.id]


# -- the controller's path -------------------------------------------------


async def test_apply_persists_a_decision_and_syncs_the_table(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    after, actions = model.rollback(r, 2000, "controller", "error rate above 5%")
    saved = await env.service.apply(r, after, actions)
    assert saved == after
    assert (await env.service.get(r.id)).phase is Phase.ROLLED_BACK
    assert (await env.track()).canaries == ()


async def test_apply_of_a_step_result_starts_a_pending_rollout(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    pending = replace(r, id="ro-pending", phase=Phase.PENDING, history=(), last_decision=None)
    await env.service.abort(r.id)
    assert await env.rollouts.save(pending, 0)
    after, actions = step(pending, None, None, SETTINGS, 3000.0)
    assert await env.service.apply(pending, after, actions) == after
    assert [c.rollout_id for c in (await env.track()).canaries] == ["ro-pending"]


async def test_apply_loses_to_an_operator_who_got_there_first(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    await env.service.pause(r.id)  # between the controller's read and its write
    after, actions = model.promote(r, 2000, "controller")
    assert await env.service.apply(r, after, actions) is None
    stored = await env.service.get(r.id)
    assert (stored.phase, stored.stage_index) == (Phase.PAUSED, 0)
    assert (await env.track()).canaries[0].weight_bp == 1000


async def test_two_controllers_applying_the_same_decision_promote_once(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    after, actions = model.promote(r, 2000, "controller")
    results = await asyncio.gather(
        env.service.apply(r, after, actions), env.other_service().apply(r, after, actions)
    )
    assert sorted(x is None for x in results) == [False, True]
    assert (await env.service.get(r.id)).stage_index == 1


async def test_apply_with_a_stale_fence_is_refused(env: Env) -> None:
    tokens = {"newest": 1}
    if isinstance(env.rollouts, MemoryRolloutStore):
        rollouts: RolloutStore = MemoryRolloutStore(lambda: tokens["newest"])
        service = RolloutService(rollouts, env.routing, SETTINGS, STABLE, clock=Clock())
    else:
        service = env.service
    r = await service.start(TRACK, "ft-1")
    after, actions = model.rollback(r, 2000, "controller", "bad")
    if isinstance(env.rollouts, RedisRolloutStore):
        client: aioredis.Redis = env.rollouts._redis
        namespace = env.rollouts.records_key.rsplit(":", 1)[0]
        await client.set(leader_token_key(namespace), 2)
    else:
        tokens["newest"] = 2
    assert await service.apply(r, after, actions, fence=1) is None
    assert (await service.get(r.id)).phase is Phase.PROGRESSING
    assert await service.apply(r, after, actions, fence=2) == after


async def test_apply_of_an_unknown_rollout_is_none(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    ghost = replace(r, id="ro-ghost")
    assert await env.service.apply(ghost, ghost, []) is None


# -- routing sync ------------------------------------------------------------


async def test_sync_routing_repairs_a_crash_between_the_two_writes(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1", subject="math")
    stored = await env.rollouts.load(r.id)
    assert stored is not None
    promoted, _ = model.promote(r, 2000)
    assert await env.rollouts.save(promoted, stored.revision)  # ... and then the process died
    assert (await env.track()).canaries[0].weight_bp == 1000
    await env.service.sync_routing()
    table = await env.table()
    assert table.tracks[TRACK].canaries[0].weight_bp == 5000
    await env.service.sync_routing()
    assert await env.table() == table  # nothing to do: no new version


async def test_sync_routing_on_an_empty_store_writes_nothing(env: Env) -> None:
    await env.service.sync_routing()
    assert await env.routing.load_version() == 0


async def test_sync_routing_retries_when_another_writer_wins(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    stored = await env.rollouts.load(r.id)
    assert stored is not None
    assert await env.rollouts.save(model.promote(r, 2000)[0], stored.revision)
    original_save = env.routing.save_table
    interfered: list[int] = []

    async def racing_save(table: RoutingTable, expected_version: int) -> bool:
        if not interfered:  # someone else writes first, once
            current = await env.table()
            interfered.append(current.version)
            other = RoutingTable(current.version + 1, {**current.tracks, "x": TrackRoute("y")})
            assert await original_save(other, current.version)
        return await original_save(table, expected_version)

    env.routing.save_table = racing_save  # type: ignore[method-assign]
    await env.service.sync_routing()
    table = await env.table()
    assert table.version == interfered[0] + 2
    assert table.tracks["x"] == TrackRoute("y")  # the other writer's change survives
    assert table.tracks[TRACK].canaries[0].weight_bp == 5000


async def test_sync_routing_gives_up_when_it_keeps_losing(env: Env) -> None:
    await env.service.start(TRACK, "ft-1")
    original_save = env.routing.save_table

    async def always_beaten(table: RoutingTable, expected_version: int) -> bool:
        current = await env.table()
        assert await original_save(
            RoutingTable(current.version + 1, current.tracks), current.version
        )
        return await original_save(table, expected_version)

    stored = await env.rollouts.load((await env.service.list())[0].id)
    assert stored is not None
    assert await env.rollouts.save(model.promote(stored.rollout, 2000)[0], stored.revision)
    env.routing.save_table = always_beaten  # type: ignore[method-assign]
    with pytest.raises(RoutingStoreError, match="kept changing"):
        await env.service.sync_routing()


async def test_a_routing_store_failure_after_saving_is_repaired_later(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    r = await env.service.start(TRACK, "ft-1")
    original_save = env.routing.save_table

    async def down(table: RoutingTable, expected_version: int) -> bool:
        raise RoutingStoreError("cannot save the routing table in Redis: down")

    env.routing.save_table = down  # type: ignore[method-assign]
    back = await env.service.rollback(r.id)  # the record is the truth; the table lags
    assert back.phase is Phase.ROLLED_BACK
    assert "saved but the routing table is not yet" in caplog.text
    assert len((await env.track()).canaries) == 1
    env.routing.save_table = original_save  # type: ignore[method-assign]
    await env.service.sync_routing()
    assert (await env.track()).canaries == ()


async def test_operator_transition_retries_when_the_record_moves(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    original_save = env.rollouts.save
    raced: list[bool] = []

    async def racing_save(rollout: Rollout, expected: int, fence: int | None = None) -> bool:
        if not raced:  # the controller's hold decision lands first, once
            raced.append(True)
            held = r.decided(model.Decision(1500, "hold", "waiting", {}), record=False)
            assert await original_save(held, expected)
        return await original_save(rollout, expected, fence)

    env.rollouts.save = racing_save  # type: ignore[method-assign]
    paused = await env.service.pause(r.id)
    assert paused.phase is Phase.PAUSED
    assert raced == [True]


async def test_start_returns_the_rollout_when_the_controller_started_it_first(env: Env) -> None:
    original_save = env.rollouts.save

    async def controller_first(rollout: Rollout, expected: int, fence: int | None = None) -> bool:
        saved = await original_save(rollout, expected, fence)
        if saved and rollout.phase is Phase.PENDING:  # the controller's tick sees it at once
            assert await original_save(model.start(rollout, 1500)[0], expected + 1)
        return saved

    env.rollouts.save = controller_first  # type: ignore[method-assign]
    r = await env.service.start(TRACK, "ft-1")
    assert r.phase is Phase.PROGRESSING
    assert [(d.decision, d.actor) for d in r.history] == [("start", "controller")]


async def test_operator_transition_gives_up_when_the_record_never_settles(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    original_save = env.rollouts.save

    async def always_beaten(rollout: Rollout, expected: int, fence: int | None = None) -> bool:
        stored = await env.rollouts.load(rollout.id)
        assert stored is not None
        held = stored.rollout.decided(model.Decision(1500, "hold", "waiting", {}), record=False)
        assert await original_save(held, stored.revision)
        return await original_save(rollout, expected, fence)

    env.rollouts.save = always_beaten  # type: ignore[method-assign]
    with pytest.raises(RolloutConflict, match="kept changing"):
        await env.service.pause(r.id)


async def test_apply_loses_a_race_between_its_read_and_its_write(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    original_save = env.rollouts.save

    async def operator_in_between(
        rollout: Rollout, expected: int, fence: int | None = None
    ) -> bool:
        env.rollouts.save = original_save  # type: ignore[method-assign]
        assert await original_save(model.pause(r, 1500)[0], expected)
        return await original_save(rollout, expected, fence)

    env.rollouts.save = operator_in_between  # type: ignore[method-assign]
    after, actions = model.promote(r, 2000, "controller")
    assert await env.service.apply(r, after, actions) is None
    assert (await env.service.get(r.id)).phase is Phase.PAUSED


# -- notifications -----------------------------------------------------------


async def test_operator_transitions_leave_their_notices_for_the_controller(env: Env) -> None:
    r = await env.service.start(TRACK, "ft-1")
    await env.service.pause(r.id)
    await env.service.resume(r.id)
    await env.service.rollback(r.id, reason="bad answers")
    stored = await env.service.get(r.id)
    outbox = [(n.event, n.rollout["phase"], n.decision.actor) for n in stored.outbox]
    assert outbox == [
        ("started", "progressing", "operator"),
        ("paused", "paused", "operator"),
        ("resumed", "progressing", "operator"),
        ("rolled_back", "rolled_back", "operator"),
    ]
    assert stored.outbox[-1].body()["reason"] == "bad answers"
