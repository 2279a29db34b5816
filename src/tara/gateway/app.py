"""The gateway ASGI app: the hot endpoint, the other routes, auth, and the lifespan.

:func:`build_gateway` wires settings into a :class:`Gateway`. The chat
endpoint is dispatched before Starlette's router (one string compare) because
it is the only route that has to be fast; everything else, the lifespan
included, goes through Starlette. Start-up opens the upstream pool and loads
the routing table; shut-down (after uvicorn has drained in-flight requests)
closes them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tara.gateway.auth import KeyAuth, KeyChecker
from tara.gateway.chat import ChatCompletions
from tara.gateway.errors import error_body
from tara.gateway.openapi import OPENAPI_PATH, openapi_endpoint
from tara.gateway.probes import Probes
from tara.gateway.rejections import CHAT_PATH, CountRejections
from tara.gateway.upstream import UpstreamClient
from tara.rollout.routing_cache import RoutingCache
from tara.rollout.routing_store import RoutingStore
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.settings import Settings, warn_about_defaults
from tara.telemetry.interactions import InteractionSink
from tara.telemetry.metrics import MetricsRecorder

log = logging.getLogger(__name__)

_JSON = "application/json"


class Gateway:
    """The gateway as one ASGI app; attributes expose its parts to tests and later wiring."""

    def __init__(
        self,
        settings: Settings,
        *,
        routing_store: RoutingStore,
        sinks: Sequence[InteractionSink],
        metrics: MetricsRecorder,
        routes: Sequence[BaseRoute] = (),
        services: Sequence[AbstractAsyncContextManager[Any]] = (),
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.cache = RoutingCache(
            routing_store,
            {name: t.stable_model for name, t in settings.tracks.items()},
            settings.routing_refresh_seconds,
        )
        self.upstream = UpstreamClient(settings.upstream)
        self.services = tuple(services)
        self.chat = ChatCompletions(
            settings, lambda: self.cache.table, self.upstream, metrics, [metrics, *sinks]
        )
        self.probes = Probes(
            self.cache, metrics, settings.routing_refresh_seconds, lambda: self.ready
        )
        self.ready = False
        """True between the end of start-up and the start of shut-down."""
        router = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route(CHAT_PATH, self.chat),
                Route(OPENAPI_PATH, openapi_endpoint, methods=["GET"]),
                *self.probes.routes(),
                *routes,
            ],
            exception_handlers={HTTPException: _http_error},
            lifespan=lambda _app: self.lifespan(),
        )
        self._chat: ASGIApp = self.chat
        others: ASGIApp = router
        if settings.auth.enabled:
            auth = settings.auth
            rules = [
                ("/v1/", KeyChecker(auth.client_keys)),
                ("/admin/", KeyChecker([auth.admin_key])),
                (OPENAPI_PATH, KeyChecker([*auth.client_keys, auth.admin_key])),
            ]
            self._chat = KeyAuth(self.chat, rules, on_reject=self._chat_rejected)
            others = KeyAuth(router, rules)
        self._others = CountRejections(others, metrics.rejection)

    def _chat_rejected(self, status: int) -> None:
        self.metrics.rejection(status, "chat")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: the chat endpoint first (one compare), then everything else."""
        if scope["type"] == "http" and scope["path"] == CHAT_PATH:
            await self._chat(scope, receive, send)
        else:
            await self._others(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Start everything, serve, stop everything (what uvicorn's lifespan runs).

        In-process tests enter it directly: ``async with gateway.lifespan(): ...``.
        """
        for warning in warn_about_defaults(self.settings):
            log.warning("%s", warning)
        self.chat.loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            await self.upstream.start()
            stack.push_async_callback(self.upstream.close)
            await self.cache.start()
            stack.push_async_callback(self.cache.stop)
            for service in self.services:
                await stack.enter_async_context(service)
            watcher = asyncio.create_task(self.probes.watch_routing_table())
            stack.push_async_callback(_cancel, watcher)
            self.ready = True
            log.info(
                "gateway ready: %d track(s), upstream pool of %d, auth %s",
                len(self.settings.tracks),
                self.settings.upstream.max_connections,
                "on" if self.settings.auth.enabled else "OFF",
            )
            try:
                yield
            finally:
                self.ready = False
                log.info("gateway stopping")

    async def _models(self, _request: Request) -> Response:
        tracks = self.cache.table.tracks
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "tara"}
            for name in sorted(set(self.settings.tracks) | set(tracks))
        ]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=_JSON)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's 404/405 and friends, in OpenAI's error shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = error_body(str(exc.detail), "invalid_request_error", codes.get(exc.status_code))
    return Response(body, status_code=exc.status_code, headers=exc.headers, media_type=_JSON)


def build_gateway(
    settings: Settings,
    *,
    routing_store: RoutingStore | None = None,
    sinks: Sequence[InteractionSink] = (),
    registry: CollectorRegistry | None = None,
    routes: Sequence[BaseRoute] = (),
    services: Sequence[AbstractAsyncContextManager[Any]] = (),
) -> Gateway:
    """The gateway app for ``settings``.

    ``routing_store`` holds the routing table (default: in memory);
    ``sinks`` take every finished interaction besides the Prometheus
    recorder, which is always first; ``registry`` is where the metrics live
    (default: a fresh one); ``routes`` add endpoints (feedback, admin) behind
    the same auth; ``services`` are async context managers entered at
    start-up after the upstream pool and routing table, exited at shut-down
    before them (background writers of sinks, for instance).
    """
    registry = registry if registry is not None else CollectorRegistry()
    metrics = MetricsRecorder.on(registry, settings.subjects, settings.languages)
    return Gateway(
        settings,
        routing_store=routing_store if routing_store is not None else MemoryRoutingStore(),
        sinks=sinks,
        metrics=metrics,
        routes=routes,
        services=services,
    )
