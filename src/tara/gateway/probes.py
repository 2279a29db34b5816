"""Liveness, readiness and metrics endpoints, and the routing-table watcher behind them.

``/healthz`` answers 200 while the event loop runs. ``/readyz`` answers 200
once start-up has finished and stays green when the routing store (Redis) is
down: the gateway keeps routing with the last table it loaded, and says so
in ``tara_routing_table_healthy`` (the routing cache logs the change).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tara.loops import poll
from tara.rollout.routing_cache import RoutingCache
from tara.telemetry.metrics import MetricsRecorder

_JSON = "application/json"


class Probes:
    """The unauthenticated operational endpoints of one gateway.

    ``ready`` says whether start-up has finished (and shut-down not begun).
    """

    def __init__(
        self,
        cache: RoutingCache,
        metrics: MetricsRecorder,
        refresh_seconds: float,
        ready: Callable[[], bool],
    ) -> None:
        self._cache = cache
        self._metrics = metrics
        self._refresh_seconds = refresh_seconds
        self._ready = ready

    def routes(self) -> list[Route]:
        """``/healthz``, ``/readyz`` and ``/metrics``."""
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    def observe_routing_table(self) -> bool:
        """Update the routing-table gauges; whether the table is fresh.

        (The routing cache itself logs once when refreshes start failing and
        once when they succeed again.)
        """
        cache = self._cache
        healthy = bool(cache.healthy)
        self._metrics.routing_table(
            healthy=healthy, age_seconds=cache.age_seconds(), version=cache.table.version
        )
        return healthy

    async def watch_routing_table(self) -> None:
        """Keep the gauges and the log current between scrapes."""
        async for _ in poll(self._refresh_seconds):
            self.observe_routing_table()

    async def healthz(self, _request: Request) -> Response:
        """Liveness: the loop answers."""
        return Response(b'{"status":"ok"}', media_type=_JSON)

    async def readyz(self, _request: Request) -> Response:
        """Readiness: start-up done; reports the routing table's freshness."""
        if not self._ready():
            return Response(b'{"status":"starting"}', status_code=503, media_type=_JSON)
        healthy = self.observe_routing_table()
        cache = self._cache
        body = {
            "status": "ready",
            "routing_table": {
                "version": cache.table.version,
                "fresh": healthy,
                "age_seconds": round(cache.age_seconds(), 3),
            },
        }
        return Response(orjson.dumps(body), media_type=_JSON)

    async def metrics(self, _request: Request) -> Response:
        """Prometheus text exposition of the gateway's registry."""
        if self._ready():
            self.observe_routing_table()
        data = generate_latest(self._metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)
