"""One routed chat request, from the upstream attempt to the interaction record.

An :class:`Exchange` opens the upstream (retrying before the first byte,
falling back from a failing canary to stable), relays the answer (streamed
events as they come, or the whole body), and afterwards builds the
:class:`~tara.telemetry.interactions.Interaction` records for the sinks. A
client disconnect cancels it wherever it waits; the upstream connection is
then closed, which is how the upstream learns to stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Send

from tara.gateway.errors import SERVER_ERROR, UPSTREAM_ERROR, GatewayError, settled
from tara.gateway.identity import StudentHasher
from tara.gateway.retries import RetryPolicy
from tara.gateway.sse import StreamTap, error_event, parse_completion
from tara.gateway.stream_timer import StreamTimer
from tara.gateway.upstream import Opened, UpstreamClient, UpstreamError
from tara.gateway.upstream_http import UpstreamResponse
from tara.rollout.routing import Route
from tara.settings import UpstreamSettings
from tara.telemetry.interactions import Interaction, canary_attempt_id
from tara.telemetry.metrics import MetricsRecorder

if TYPE_CHECKING:
    from tara.gateway.chat_request import ChatRequest

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499
"""Status recorded when the client went away first (nginx's convention)."""


@dataclass(frozen=True, slots=True)
class Forwarding:
    """What every exchange of one endpoint shares: where and how requests go upstream."""

    upstream: UpstreamClient
    policy: RetryPolicy
    settings: UpstreamSettings
    metrics: MetricsRecorder
    hasher: StudentHasher
    stable_model: Callable[[str], str]
    """The track's current stable model (where a failing canary's request falls back)."""


@dataclass(slots=True)
class ExchangeResult:
    """What happened to the request, filled in as the exchange runs."""

    status: int = 0
    error_class: str | None = None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    answer: str | None = None
    fallback: bool = False
    failed_canary: list[Interaction] = field(default_factory=list)


class Exchange:
    """The life of one routed request; :meth:`run` never raises except on shutdown."""

    __slots__ = (
        "created",
        "finishing",
        "forwarding",
        "loop",
        "request",
        "request_id",
        "response",
        "result",
        "route",
        "send",
        "started",
        "student_hash",
        "t0",
        "upstream_s",
    )

    def __init__(
        self,
        forwarding: Forwarding,
        request: ChatRequest,
        route: Route,
        request_id: str,
        send: Send,
        t0: float,
        created: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.forwarding = forwarding
        self.loop = loop
        """The running loop (looking it up costs a system call on Python 3.11)."""
        self.request = request
        self.route = route
        self.request_id = request_id
        self.send = send
        self.t0 = t0
        """Arrival on the monotonic clock (the event loop's), for durations."""
        self.created = created
        """Arrival as Unix time, for the record."""
        self.student_hash = forwarding.hasher(request.student_id) if request.student_id else None
        self.response: UpstreamResponse | None = None
        self.started = False
        self.finishing = False
        """Set just before the last send: a disconnect after that changes nothing."""
        self.result = ExchangeResult()
        self.upstream_s = 0.0
        """Seconds spent waiting on the upstream so far (attempts, backoff, stream reads)."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The ``X-Tara-*`` response headers for the current route."""
        return [
            (b"x-tara-request-id", self.request_id.encode()),
            (b"x-tara-variant", self.route.variant.encode()),
            (b"x-tara-model", self.route.model.encode()),
        ]

    async def run(self) -> None:
        """Serve the request; on an unexpected error answer 500 (or end the stream)."""
        try:
            opened = await self._open_with_fallback()
            if opened is None:
                return
            self.response = opened.response
            if opened.streaming:
                await self._relay_stream(opened)
            else:
                await self._relay_body(opened)
            opened.response.release()
        except Exception:
            log.exception("gateway error serving request %s", self.request_id)
            self.result.error_class = "gateway"
            if not self.started:
                self.result.status = 500
                error = GatewayError(500, "internal gateway error", type=SERVER_ERROR)
                await self._send_error(error)
            elif not self.finishing:
                self.finishing = True
                event = error_event("internal gateway error", SERVER_ERROR, "gateway_error")
                await self.send({"type": "http.response.body", "body": event, "more_body": False})
        finally:
            if self.response is not None:
                self.response.close()

    # -- upstream -----------------------------------------------------------
    async def _open(self, route: Route) -> Opened:
        fwd, req = self.forwarding, self.request
        payload = req.upstream_body(route.model, self.student_hash)

        def on_retry(failure: UpstreamError, wait: float) -> None:
            fwd.metrics.upstream_retry(req.track, route.variant, failure.error_class)
            log.warning(
                "upstream attempt failed (%s%s) for %s/%s, retrying in %.2fs",
                failure.error_class,
                f", HTTP {failure.upstream_status}" if failure.upstream_status else "",
                req.track,
                route.variant,
                wait,
            )

        return await fwd.policy.run(lambda: fwd.upstream.open(payload, stream=req.stream), on_retry)

    async def _open_timed(self, route: Route) -> Opened:
        """:meth:`_open`, its time counted as waiting on the upstream."""
        start = time.monotonic()
        try:
            return await self._open(route)
        finally:
            self.upstream_s += time.monotonic() - start

    async def _open_with_fallback(self) -> Opened | None:
        try:
            return await self._open_timed(self.route)
        except UpstreamError as failure:
            last = settled(failure)
        fwd = self.forwarding
        if self.route.variant == "canary" and fwd.settings.fallback_to_stable:
            self.result.failed_canary.append(self._canary_record(last))
            fwd.metrics.fallback(self.request.track, last.error_class)
            log.warning(
                "canary %s failed (%s) for %s; falling back to stable",
                self.route.model,
                last.error_class,
                self.request.track,
            )
            stable = fwd.stable_model(self.request.track)
            self.route = Route("stable", stable, self.route.segment, self.route.rollout_id)
            self.result.fallback = True
            try:
                return await self._open_timed(self.route)
            except UpstreamError as failure:
                last = settled(failure)
        log.warning(
            "upstream failed for %s/%s: %s after %d attempt(s)",
            self.request.track,
            self.route.variant,
            last.error_class,
            last.attempts,
        )
        self.result.status = last.status
        self.result.error_class = last.error_class
        await self._send_error(last.to_error())
        return None

    # -- relaying -----------------------------------------------------------
    async def _send_error(self, error: GatewayError) -> None:
        self.finishing = True
        self.started = True
        body = error.body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *self.headers(),
        ]
        await self.send({"type": "http.response.start", "status": error.status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def _relay_body(self, opened: Opened) -> None:
        response, body = opened.response, opened.first
        out = self.result
        out.status = response.status
        if response.status < 300:
            out.answer, out.prompt_tokens, out.completion_tokens = parse_completion(body)
        content_type = response.headers.get("content-type", "application/json").encode("latin-1")
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            *self.headers(),
        ]
        self.started = True
        await self.send({"type": "http.response.start", "status": out.status, "headers": headers})
        self.finishing = True
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def _relay_stream(self, opened: Opened) -> None:
        send, out = self.send, self.result
        settings = self.forwarding.settings
        tap = StreamTap(
            drop_usage_chunk=not self.request.client_wants_usage,
            max_pending=settings.max_sse_event_bytes,
        )
        first = tap.feed(opened.first)
        if tap.content_seen:
            out.ttft_s = time.monotonic() - self.t0
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *self.headers(),
        ]
        self.started = True
        out.status = 200
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # What is left to send goes with the end of the response, in one write. An event
        # the upstream cut off is never sent: it is dropped, as a client would drop it.
        if opened.response.at_eof():  # the whole answer came in the first read
            failure, last = None, first
        else:
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            failure, last = await self._pump(tap)
        out.answer = tap.answer
        out.prompt_tokens, out.completion_tokens = tap.prompt_tokens, tap.completion_tokens
        if tap.gave_up:
            self.forwarding.metrics.telemetry_drop("stream_tap", "event_too_large")
            log.warning(
                "stream of request %s had an event over %d bytes: relayed unobserved",
                self.request_id,
                settings.max_sse_event_bytes,
            )
        if failure is not None:
            out.error_class = failure
            message = f"the upstream stream was interrupted ({failure})"
            last = error_event(message, UPSTREAM_ERROR, "upstream_stream_interrupted")
            log.warning("upstream stream for %s broke: %s", self.request_id, failure)
        elif tap.error is not None:
            out.error_class = "upstream"
        self.finishing = True
        await send({"type": "http.response.body", "body": last, "more_body": False})

    async def _pump(self, tap: StreamTap) -> tuple[str | None, bytes]:
        """Forward events until the upstream ends: the error class if it broke, and the
        events of the last read, which the caller sends with the end of the response
        (one send and one write fewer per stream than sending them on their own)."""
        assert self.response is not None
        response, send, out = self.response, self.send, self.result
        settings = self.forwarding.settings
        timer = StreamTimer(self.loop, settings.idle_timeout, self.t0 + settings.total_timeout)
        clock = time.monotonic
        waited = 0.0
        try:
            while True:
                timer.waiting_since = start = clock()
                chunk = await response.read_some()
                # A slow client is not an idle upstream: nothing expires while sending.
                timer.waiting_since = None
                waited += clock() - start
                if not chunk:
                    return None, b""
                data = tap.feed(chunk)
                if out.ttft_s is None and tap.content_seen:
                    out.ttft_s = clock() - self.t0
                if tap.done and response.at_eof():  # ``[DONE]``, then nothing: the end
                    return None, data
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except asyncio.CancelledError:
            if not timer.claim():
                raise
            return "timeout", b""
        except OSError:  # the connection broke
            return "connection", b""
        finally:
            timer.stop()
            since = timer.waiting_since
            if since is not None:  # timed out, broke or cancelled while waiting
                waited += clock() - since
            self.upstream_s += waited

    # -- records ------------------------------------------------------------
    def _record(
        self, request_id: str, status: int, error_class: str | None, latency_s: float
    ) -> Interaction:
        """A record of this request as routed now (the fields every record of it shares)."""
        req, route = self.request, self.route
        return Interaction(
            request_id=request_id,
            created_at=self.created,
            track=req.track,
            segment=route.segment,
            variant=route.variant,
            model=route.model,
            student_hash=self.student_hash,
            subject=req.subject,
            language=req.language,
            grade=req.grade,
            topic=req.topic,
            status=status,
            error_class=error_class,
            latency_s=latency_s,
            stream=req.stream,
            messages=req.messages,
        )

    def _canary_record(self, failure: UpstreamError) -> Interaction:
        latency = time.monotonic() - self.t0
        attempt = canary_attempt_id(self.request_id)
        return self._record(attempt, failure.status, failure.error_class, latency)

    def records(self, ended: float) -> list[Interaction]:
        """The interaction records of this request (a failed canary attempt first)."""
        out = self.result
        served = self._record(self.request_id, out.status, out.error_class, ended - self.t0)
        served.ttft_s = out.ttft_s
        served.prompt_tokens, served.completion_tokens = out.prompt_tokens, out.completion_tokens
        served.user_retry = self.request.user_retry
        served.fallback = out.fallback
        served.answer = out.answer
        return [*out.failed_canary, served]
