"""The admin HTTP API of the fine-tuning loop: runs (list, show, approve, cancel) and triggers.

Mounted by the gateway next to the rollout routes, behind the admin key:

- ``GET /admin/finetune/runs[?open=true]`` — every run, newest first, one line each;
- ``GET /admin/finetune/runs/{id}`` — the whole run: triggers, steps, gate, rollout;
- ``POST /admin/finetune/runs/{id}/approve`` — ``{"actor"?}``: let an evaluated run's
  model go to its canary (without ``retrain.auto_deploy``);
- ``POST /admin/finetune/runs/{id}/cancel`` — ``{"reason"?, "actor"?}``: stop the run;
- ``GET /admin/triggers`` — the triggers' last look, open runs and each segment's cooldown.

Refusals are OpenAI-shaped error bodies: 404 unknown run, 409 a change its
state does not allow (approving a run still training, cancelling one that
ended), 422 a malformed body, 503 the state store is down.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tara.retrain.operations import (
    RunConflict,
    RunNotFound,
    approve_run,
    cancel_run,
    overview,
    summary,
)
from tara.retrain.stores import LedgerStore, RunStore, StoreError
from tara.rollout.admin_api import (
    ApiError,
    Handler,
    guarded,
    json_body,
    json_response,
    text_field,
)
from tara.settings import Settings


def _refusal(exc: Exception) -> ApiError:
    if isinstance(exc, RunNotFound):
        return ApiError(404, str(exc), "run_not_found")
    if isinstance(exc, ValueError):
        return ApiError(409, str(exc), "invalid_transition")
    if isinstance(exc, RunConflict):
        return ApiError(409, str(exc), "run_conflict")
    return ApiError(503, f"fine-tuning state unavailable: {exc}", "state_store_unavailable")


def _guarded(handler: Handler) -> Handler:
    return guarded(handler, (RunNotFound, RunConflict, ValueError, StoreError), _refusal)


class RunsApi:
    """Request handlers over the run store and the trigger ledger."""

    def __init__(
        self,
        runs: RunStore,
        ledger: LedgerStore,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runs, self.ledger, self.settings, self.clock = runs, ledger, settings, clock

    async def list(self, request: Request) -> Response:
        """``GET /admin/finetune/runs[?open=true]``."""
        only_open = request.query_params.get("open", "").lower() in ("1", "true", "yes")
        runs = [r for r in reversed(await self.runs.list()) if r.open or not only_open]
        now = self.clock()
        return json_response({"object": "list", "data": [summary(r, now) for r in runs]})

    async def show(self, request: Request) -> Response:
        """``GET /admin/finetune/runs/{id}``."""
        run_id = request.path_params["run_id"]
        run = await self.runs.get(run_id)
        if run is None:
            raise RunNotFound(f"no fine-tuning run with id {run_id!r}")
        return json_response({**run.to_dict(), "summary": summary(run, self.clock())})

    async def approve(self, request: Request) -> Response:
        """``POST /admin/finetune/runs/{id}/approve``."""
        body = await json_body(request)
        actor = text_field(body, "actor") or "admin-api"
        run = await approve_run(self.runs, request.path_params["run_id"], actor, self.clock())
        return json_response(summary(run, self.clock()))

    async def cancel(self, request: Request) -> Response:
        """``POST /admin/finetune/runs/{id}/cancel``."""
        body = await json_body(request)
        actor = text_field(body, "actor") or "admin-api"
        reason = text_field(body, "reason") or ""
        run_id = request.path_params["run_id"]
        run = await cancel_run(self.runs, run_id, actor, reason, self.clock())
        return json_response(summary(run, self.clock()))

    async def triggers(self, _request: Request) -> Response:
        """``GET /admin/triggers``: the last look, open runs and cooldowns."""
        ledger = (await self.ledger.load()).ledger
        cooldown = self.settings.triggers.cooldown.total_seconds()
        interval = self.settings.retrain.interval.total_seconds()
        runs = await self.runs.list()
        return json_response(overview(ledger, runs, cooldown, interval, self.clock()))


def retrain_routes(runs: RunStore, ledger: LedgerStore, settings: Settings) -> list[BaseRoute]:
    """The fine-tuning loop's admin routes for ``build_gateway(routes=...)``."""
    api = RunsApi(runs, ledger, settings)
    return [
        Route("/admin/finetune/runs", _guarded(api.list), methods=["GET"]),
        Route("/admin/finetune/runs/{run_id}", _guarded(api.show), methods=["GET"]),
        Route("/admin/finetune/runs/{run_id}/approve", _guarded(api.approve), methods=["POST"]),
        Route("/admin/finetune/runs/{run_id}/cancel", _guarded(api.cancel), methods=["POST"]),
        Route("/admin/triggers", _guarded(api.triggers), methods=["GET"]),
    ]
