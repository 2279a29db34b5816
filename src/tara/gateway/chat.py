"""``POST /v1/chat/completions``: the raw ASGI endpoint on the hot path.

Read the body (bounded), parse it once, route it from the in-memory table,
run the :class:`~tara.gateway.exchange.Exchange`, hand its records to the
sinks. Nothing here awaits Redis or a database. A watcher on ``receive``
notices a client that goes away and cancels the exchange, so an upstream
that hangs or streams on is cut off. The watcher is a task only for requests
that outlive ``server.disconnect_watch_after`` (20 ms): most answers are done
sooner, and a timer is far cheaper than a task that must be cancelled again.
A client that leaves earlier is noticed then, so an abandoned upstream call
runs at most that much longer than it would with a watcher from the start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence

from starlette.types import Receive, Scope, Send

from tara.gateway.body import ClientGoneError, read_body
from tara.gateway.chat_request import parse_chat_request
from tara.gateway.errors import GatewayError, send_error
from tara.gateway.exchange import CLIENT_CLOSED, Exchange, Forwarding
from tara.gateway.identity import StudentHasher
from tara.gateway.retries import RetryPolicy
from tara.gateway.upstream import UpstreamClient
from tara.rollout.routing import RoutingTable, route
from tara.settings import Settings
from tara.telemetry.interactions import Interaction, InteractionSink
from tara.telemetry.metrics import MetricsRecorder

log = logging.getLogger(__name__)

_ALLOW = [(b"allow", b"POST")]


class _RandomHex:
    """80-bit random hex strings from ``os.urandom``, 1,024 per system call.

    A system call per request costs more than all of the id's other work;
    reading ahead keeps the bytes just as unguessable. A forked child starts
    on fresh bytes, so parent and child never hand out the same ones.
    Event-loop use only (not thread-safe).
    """

    __slots__ = ("_hex", "_next")

    _CHARS = 20
    _BATCH = 1024

    def __init__(self) -> None:
        self._hex = ""
        self._next = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        """Forget the bytes read ahead."""
        self._hex = ""
        self._next = 0

    def __call__(self) -> str:
        start = self._next
        if start >= len(self._hex):
            self._hex = os.urandom(self._BATCH * self._CHARS // 2).hex()
            start = 0
        self._next = start + self._CHARS
        return self._hex[start : start + self._CHARS]


_random_hex = _RandomHex()


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, unique across replicas and unguessable.

    The first 12 are the time in milliseconds, so ids sort by arrival and the
    interaction log's primary-key index grows at its end instead of taking
    writes all over; the other 20 (80 bits) are random.
    """
    return f"{time.time_ns() // 1_000_000:012x}{_random_hex()}"


class DisconnectWatch:
    """Cancels the request's task if the client disconnects before the answer is complete.

    Watching starts after ``delay`` seconds (a timer until then); :meth:`stop`
    ends the timer or the watcher, whichever is live. ``loop`` is the running
    loop, passed in because looking it up costs a system call on Python 3.11.
    """

    __slots__ = ("_handle", "_receive", "_task", "_watcher", "disconnected", "exchange")

    def __init__(
        self,
        receive: Receive,
        exchange: Exchange,
        loop: asyncio.AbstractEventLoop,
        delay: float,
    ) -> None:
        task = asyncio.current_task(loop)
        assert task is not None
        self._task = task
        self._receive = receive
        self.exchange = exchange
        self.disconnected = False
        self._watcher: asyncio.Task[None] | None = None
        self._handle: asyncio.TimerHandle | None = loop.call_later(delay, self._start)

    def _start(self) -> None:
        self._handle = None
        self._watcher = self._task.get_loop().create_task(self._watch())

    async def _watch(self) -> None:
        receive = self._receive
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except asyncio.CancelledError:
            # stop(): the request is over. A task ending in CancelledError keeps it, and its
            # traceback holds this frame, this watch and so the whole request in a reference
            # cycle: only the garbage collector could free them, and collecting a load's worth
            # of them held the event loop for up to 150 ms (issue 16).
            return
        if not self.exchange.finishing:
            self.disconnected = True
            self._task.cancel()

    def stop(self) -> None:
        """Stop watching (the request is over)."""
        if self._handle is not None:
            self._handle.cancel()
        elif self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None


class ChatCompletions:
    """The chat-completions endpoint; shared, immutable state for every request."""

    def __init__(
        self,
        settings: Settings,
        table: Callable[[], RoutingTable],
        upstream: UpstreamClient,
        metrics: MetricsRecorder,
        sinks: Sequence[InteractionSink],
    ) -> None:
        self.settings = settings
        self.table = table
        self.metrics = metrics
        self.sinks = tuple(sinks)
        self.forwarding = Forwarding(
            upstream,
            RetryPolicy(settings.upstream),
            settings.upstream,
            metrics,
            StudentHasher(settings.auth.student_hash_key.get_secret_value()),
            self.stable_model,
        )
        self.max_body = settings.server.max_body_bytes
        self.watch_after = settings.server.disconnect_watch_after
        self.loop: asyncio.AbstractEventLoop | None = None
        """The serving loop, set at start-up (looked up per request until then)."""

    def stable_model(self, track: str) -> str:
        """The track's stable model in the current table (configured one as a last resort)."""
        tr = self.table().tracks.get(track)
        return tr.stable_model if tr is not None else self.settings.tracks[track].stable_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        t0 = time.monotonic()
        created = time.time()
        request_id = new_request_id()
        if scope["method"] != "POST":
            error = GatewayError(
                405, "use POST for /v1/chat/completions", code="method_not_allowed"
            )
            await self._reject(send, error, request_id, _ALLOW)
            return
        try:
            raw = await read_body(scope, receive, self.max_body)
        except GatewayError as too_big:
            await self._reject(send, too_big, request_id)
            return
        except ClientGoneError:
            return
        request = parse_chat_request(raw, scope["headers"])
        if isinstance(request, GatewayError):
            await self._reject(send, request, request_id)
            return
        where = route(
            self.table(), request.track, request.student_id, request.subject, request.language
        )
        if where is None:
            message = f"model '{request.track[:100]}' is not a track served here; see /v1/models"
            error = GatewayError(404, message, code="model_not_found", param="model")
            await self._reject(send, error, request_id)
            return
        loop = self.loop or asyncio.get_running_loop()
        exchange = Exchange(self.forwarding, request, where, request_id, send, t0, created, loop)
        await self._serve(exchange, receive, loop)

    async def _serve(
        self, exchange: Exchange, receive: Receive, loop: asyncio.AbstractEventLoop
    ) -> None:
        watch = DisconnectWatch(receive, exchange, loop, self.watch_after)
        in_flight = self.metrics.active
        in_flight.count += 1
        try:
            await exchange.run()
        except asyncio.CancelledError:
            if not watch.disconnected:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            exchange.result.status = CLIENT_CLOSED
            log.debug("client went away during request %s", exchange.request_id)
        finally:
            watch.stop()
            in_flight.count -= 1
        ended = time.monotonic()
        route = exchange.route
        overhead = ended - exchange.t0 - exchange.upstream_s
        self.metrics.overhead(
            exchange.request.track, route.variant, exchange.request.stream, overhead
        )
        self.emit(exchange.records(ended))

    def emit(self, records: Sequence[Interaction]) -> None:
        """Hand records to every sink; a failing sink loses its records, never the request."""
        for sink in self.sinks:
            for record in records:
                try:
                    sink.record(record)
                except Exception:
                    log.exception("interaction sink %s failed", type(sink).__name__)
                    self.metrics.dropped("sink_error")

    async def _reject(
        self,
        send: Send,
        error: GatewayError,
        request_id: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.metrics.rejection(error.status, "chat")
        await send_error(send, error, [(b"x-tara-request-id", request_id.encode()), *headers])
