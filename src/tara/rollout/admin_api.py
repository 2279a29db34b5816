"""The admin HTTP API for rollouts: list, status, start, promote, pause, resume, rollback, abort.

:func:`admin_routes` returns Starlette routes the gateway mounts under
``/admin/`` (where its auth already demands the admin key). Errors are data:
each refusal of the service becomes an OpenAI-shaped error body with the
status an operator's script can act on — 404 unknown rollout, 409 invalid
transition or overlapping rollout, 422 bad input, 503 state store down.

``GET /admin/state`` says where the gateway's state lives and whether a
controller can judge its rollouts; ``POST /admin/rollouts`` refuses (409
``no_controller``) on a gateway whose state is in process memory with no
controller embedded next to it, since no ``tara controller`` could ever see
that rollout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tara.rollout.metric_source import MetricSource, WindowMetricSource, stage_window_start
from tara.rollout.model import RUNNING, Rollout, TransitionError
from tara.rollout.rollout_store import RolloutStoreError
from tara.rollout.routing_store import RoutingStoreError
from tara.rollout.service import RolloutConflict, RolloutNotFound, RolloutService, UnknownTrack
from tara.rollout.status import detail, live_numbers, summary
from tara.settings import Settings
from tara.state import HOW_TO_SHARE, SharedState
from tara.telemetry.windows import WindowStats

log = logging.getLogger(__name__)

StatsReader = Callable[[Rollout], Awaitable[tuple[WindowStats, WindowStats]]]
"""``(canary, stable)`` stats of a rollout's current stage, for live status numbers."""
Handler = Callable[[Request], Awaitable[Response]]
"""An admin route's request handler."""

ACTIONS = ("promote", "pause", "resume", "rollback", "abort")
MAX_BODY_BYTES = 64 * 1024
_JSON = "application/json"


class ApiError(Exception):
    """A refusal, with what the error body says."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def response(self) -> Response:
        """The OpenAI-shaped error response."""
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        error = {"message": self.message, "type": kind, "code": self.code, "param": self.param}
        return Response(orjson.dumps({"error": error}), self.status, media_type=_JSON)


def json_response(data: Any, status: int = 200) -> Response:
    """``data`` as a JSON response (shared by every admin route)."""
    return Response(orjson.dumps(data), status, media_type=_JSON)


def _refusal(exc: Exception) -> ApiError:
    """Map the service's exceptions to statuses."""
    if isinstance(exc, RolloutNotFound):
        return ApiError(404, str(exc), "rollout_not_found")
    if isinstance(exc, TransitionError):
        return ApiError(409, str(exc), "invalid_transition")
    if isinstance(exc, RolloutConflict):
        return ApiError(409, str(exc), "rollout_conflict")
    if isinstance(exc, UnknownTrack):
        return ApiError(422, str(exc), "unknown_track", "track")
    if isinstance(exc, ValueError):
        return ApiError(422, str(exc), "invalid_value")
    return ApiError(503, f"rollout state unavailable: {exc}", "state_store_unavailable")


_REFUSED = (
    RolloutNotFound,
    TransitionError,
    RolloutConflict,
    UnknownTrack,
    ValueError,
    RolloutStoreError,
    RoutingStoreError,
)


async def json_body(request: Request) -> Mapping[str, Any]:
    """The request's JSON object (empty body: ``{}``); :class:`ApiError` for anything else."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"body over {MAX_BODY_BYTES} bytes", "body_too_large")
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", "invalid_json") from exc
    if not isinstance(data, dict):
        raise ApiError(422, "body must be a JSON object", "invalid_body")
    return data


def text_field(body: Mapping[str, Any], name: str) -> str | None:
    """An optional string field (absent or null: ``None``)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, f"'{name}' must be a non-empty string", "invalid_value", name)
    return value.strip()


def _required(body: Mapping[str, Any], name: str) -> str:
    value = text_field(body, name)
    if value is None:
        raise ApiError(422, f"'{name}' is required", "missing_field", name)
    return value


class AdminApi:
    """Request handlers over a :class:`RolloutService`.

    ``state`` is the shared state the service works on: given, the API reports
    it and refuses rollouts no controller could judge.
    """

    def __init__(
        self,
        service: RolloutService,
        stats_reader: StatsReader | None = None,
        state: SharedState | None = None,
    ) -> None:
        self.service = service
        self.stats_reader = stats_reader
        self.state = state
        self._verbs = {
            "promote": service.promote,
            "pause": service.pause,
            "resume": service.resume,
            "rollback": service.rollback,
            "abort": service.abort,
        }

    async def _live(self, rollout: Rollout) -> dict[str, Any] | None:
        if self.stats_reader is None or rollout.phase not in RUNNING:
            return None
        try:
            canary, stable = await self.stats_reader(rollout)
        except Exception as exc:  # status must still answer when stats are down
            log.warning("live stats of rollout %s unreadable: %s", rollout.id, exc)
            return {"error": f"stats unreadable: {type(exc).__name__}: {exc}"}
        return live_numbers(canary, stable, self.service.settings, rollout.stage)

    async def list(self, request: Request) -> Response:
        """``GET /admin/rollouts[?track=T&active=true]``."""
        track = request.query_params.get("track") or None
        active = request.query_params.get("active", "").lower() in ("1", "true", "yes")
        rollouts = await self.service.list(track, active_only=active)
        now = self.service.now()
        return json_response({"object": "list", "data": [summary(r, now) for r in rollouts]})

    async def status(self, request: Request) -> Response:
        """``GET /admin/rollouts/{id}``: stage, weight, time left and live numbers."""
        rollout = await self.service.get(request.path_params["rollout_id"])
        return json_response(detail(rollout, self.service.now(), await self._live(rollout)))

    async def start(self, request: Request) -> Response:
        """``POST /admin/rollouts`` with ``{"track", "candidate", "subject"?, "language"?}``."""
        if self.state is not None and not self.state.judged:
            msg = (
                "no controller can judge rollouts on this gateway: its state is in process "
                f"memory, which no `tara controller` can see; {HOW_TO_SHARE}"
            )
            raise ApiError(409, msg, "no_controller")
        body = await json_body(request)
        rollout = await self.service.start(
            _required(body, "track"),
            _required(body, "candidate"),
            subject=text_field(body, "subject"),
            language=text_field(body, "language"),
            actor=text_field(body, "actor") or "admin-api",
        )
        return json_response(detail(rollout, self.service.now()), 201)

    async def state_report(self, _request: Request) -> Response:
        """``GET /admin/state``: where the state lives and whether a controller can judge it."""
        if self.state is None:
            raise ApiError(404, "this gateway does not report its state", "not_found")
        state = self.state
        try:
            leading: bool | None = await state.leader_present()
        except Exception as exc:  # the report must answer when Redis is down
            log.warning("cannot tell whether a controller leads: %s", exc)
            leading = None
        body = {
            "backend": state.backend,
            "shared": state.shared,
            "namespace": state.namespace if state.shared else None,
            "controller": {
                "embedded": state.controller_embedded,
                "leading": leading,
                "can_judge_rollouts": state.judged,
            },
        }
        return json_response(body)

    async def act(self, request: Request) -> Response:
        """``POST /admin/rollouts/{id}/{action}`` with ``{"reason"?, "actor"?}``."""
        action = request.path_params["action"]
        if action not in self._verbs:
            msg = f"unknown action {action!r}; one of: {', '.join(ACTIONS)}"
            raise ApiError(404, msg, "unknown_action")
        body = await json_body(request)
        reason = text_field(body, "reason") or ""
        actor = text_field(body, "actor") or "admin-api"
        rollout = await self._verbs[action](
            request.path_params["rollout_id"], actor=actor, reason=reason
        )
        return json_response(detail(rollout, self.service.now()))


def guarded(
    handler: Handler, refused: tuple[type[Exception], ...], refusal: Callable[[Exception], ApiError]
) -> Handler:
    """``handler`` answering its :class:`ApiError` and the ``refused`` exceptions (mapped by
    ``refusal``) as OpenAI-shaped error bodies (shared by every admin route)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except refused as exc:
            return refusal(exc).response()

    return endpoint


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, _REFUSED, _refusal)


def admin_routes(
    service: RolloutService,
    stats_reader: StatsReader | None = None,
    state: SharedState | None = None,
) -> list[BaseRoute]:
    """The rollout routes (and ``/admin/state``) for ``build_gateway(routes=...)``."""
    api = AdminApi(service, stats_reader, state)
    return [
        Route("/admin/state", _guarded(api.state_report), methods=["GET"]),
        Route("/admin/rollouts", _guarded(api.list), methods=["GET"]),
        Route("/admin/rollouts", _guarded(api.start), methods=["POST"]),
        Route("/admin/rollouts/{rollout_id}", _guarded(api.status), methods=["GET"]),
        Route("/admin/rollouts/{rollout_id}/{action}", _guarded(api.act), methods=["POST"]),
    ]


def stage_stats_reader(source: MetricSource, clock: Callable[[], float] = time.time) -> StatsReader:
    """A :data:`StatsReader` over ``source``: both variants since the current stage began."""

    async def read(rollout: Rollout) -> tuple[WindowStats, WindowStats]:
        return await source.read(rollout, stage_window_start(rollout), clock())

    return read


def routes_from_settings(settings: Settings, state: SharedState) -> list[BaseRoute]:
    """The admin routes of a gateway over ``state``; live numbers from its window stats."""
    service = RolloutService.over(state, settings)
    reader = stage_stats_reader(WindowMetricSource(state.windows))
    return admin_routes(service, reader, state)
