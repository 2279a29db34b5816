"""The upstream client: one shared connection pool and one attempt at a request.

:meth:`UpstreamClient.open` makes a single attempt and returns only once the
first byte is in hand (the first body chunk of a stream, the whole body
otherwise), so everything that can go wrong before the client has seen a byte
comes out as an :class:`UpstreamError` the caller may retry. Failures carry
an error class from :data:`tara.telemetry.windows.ERROR_CLASSES` and the
status and message the client gets if retries run out; messages never name
the upstream URL or key.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import ssl
import time
from dataclasses import dataclass

import yarl

from tara.gateway.errors import UPSTREAM_ERROR, GatewayError
from tara.gateway.stream_timer import StreamTimer
from tara.gateway.upstream_http import UpstreamPool, UpstreamResponse
from tara.settings import UpstreamSettings

RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
_MAX_ERROR_BODY = 64 * 1024


class UpstreamError(Exception):
    """One failed attempt: why (error class), whether to retry, what the client would get."""

    def __init__(
        self,
        error_class: str,
        *,
        status: int,
        message: str,
        code: str,
        retryable: bool,
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.status = status
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.upstream_status = upstream_status
        self.attempts = 1
        """Attempts made in all when this failure ended the request."""

    def to_error(self) -> GatewayError:
        """The client-facing error once retries are over."""
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return GatewayError(
            self.status, f"{self.message} (after {tries})", type=UPSTREAM_ERROR, code=self.code
        )


def timed_out() -> UpstreamError:
    """No first byte from the upstream in time."""
    return UpstreamError(
        "timeout",
        status=504,
        message="the upstream did not answer in time",
        code="upstream_timeout",
        retryable=True,
    )


def connection_failed() -> UpstreamError:
    """The connection to the upstream failed or broke."""
    return UpstreamError(
        "connection",
        status=502,
        message="could not reach the upstream",
        code="upstream_connection_error",
        retryable=True,
    )


def redact_url(url: str) -> str:
    """``url`` without user name and password, fit for logs."""
    parsed = yarl.URL(url)
    return str(parsed.with_user(None)) if parsed.user or parsed.password else url


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def failure_for_status(status: int, retry_after: str | None) -> UpstreamError | None:
    """Classify an upstream error status; ``None`` means pass the answer to the client."""
    if status == 429:
        return UpstreamError(
            "rate_limited",
            status=503,
            message="the upstream is rate limiting the gateway",
            code="upstream_rate_limited",
            retryable=True,
            retry_after=parse_retry_after(retry_after),
            upstream_status=status,
        )
    if status in (401, 403):
        # The gateway's own upstream key is refused: the client can do nothing about it.
        return UpstreamError(
            "upstream",
            status=502,
            message="the upstream refused the gateway's credentials",
            code="upstream_auth_error",
            retryable=False,
            upstream_status=status,
        )
    if status == 404:
        # The client named a track, not a model: an unknown model is our configuration's fault.
        return UpstreamError(
            "upstream",
            status=502,
            message="the upstream does not know the configured model",
            code="upstream_model_not_found",
            retryable=False,
            upstream_status=status,
        )
    if 400 <= status < 500:
        return None
    return UpstreamError(
        "upstream",
        status=503 if status == 503 else 502,
        message=f"the upstream failed with HTTP {status}",
        code="upstream_unavailable" if status == 503 else "upstream_error",
        retryable=status in RETRY_STATUSES,
        retry_after=parse_retry_after(retry_after) if status == 503 else None,
        upstream_status=status,
    )


@dataclass(slots=True)
class Opened:
    """A successful attempt: the response and its first bytes.

    ``first`` is the first body chunk of a stream, or the whole body of
    anything else (including an upstream 4xx passed through to the client).
    """

    response: UpstreamResponse
    first: bytes
    streaming: bool


class UpstreamClient:
    """The shared connection pool to the upstream, from :meth:`start` to :meth:`close`."""

    def __init__(
        self, settings: UpstreamSettings, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.settings = settings
        self.url = f"{settings.base_url}/chat/completions"
        self._ssl_context = ssl_context
        """Trust for an ``https://`` upstream (the system's certificate authorities if ``None``)."""
        # Sent with every request: bodies pass through as the upstream sent them (no
        # Accept-Encoding, so nothing to decompress).
        self._headers = {
            "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "*/*",
            "User-Agent": "tara-gateway",
        }
        self._pool: UpstreamPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pool(self) -> UpstreamPool:
        """The live pool (only between :meth:`start` and :meth:`close`)."""
        if self._pool is None:
            msg = "upstream client is not started"
            raise RuntimeError(msg)
        return self._pool

    async def start(self) -> None:
        """Open the connection pool (call inside the running event loop)."""
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._pool = UpstreamPool(
            self.url,
            self._headers,
            limit=s.max_connections,
            connect_timeout=s.connect_timeout,
            keepalive=30.0,
            ssl_context=self._ssl_context,
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def open(self, payload: bytes, *, stream: bool) -> Opened:
        """One attempt, up to the first byte; raises :class:`UpstreamError`.

        A stream's first body chunk, or a whole non-streamed answer, must be in
        within ``first_byte_timeout``: one timer that cancels this task, as
        ``asyncio.timeout`` would, without its three look-ups of the running
        loop (each a system call on Python 3.11) and its context object.
        """
        pool = self.pool
        assert self._loop is not None
        response: UpstreamResponse | None = None
        timer = StreamTimer(self._loop, self.settings.first_byte_timeout, math.inf)
        try:
            response = await pool.post(payload)
            return await self._first(response, streaming=stream)
        except BaseException as exc:
            if response is not None:
                # Closing (not releasing) drops the connection, so the upstream stops work.
                response.close()
            if isinstance(exc, asyncio.CancelledError) and timer.claim():
                raise timed_out() from None
            if isinstance(exc, TimeoutError):  # connecting took over ``connect_timeout``
                raise timed_out() from None
            if isinstance(exc, OSError):
                raise connection_failed() from None
            raise
        finally:
            timer.stop()

    @staticmethod
    async def _first(response: UpstreamResponse, *, streaming: bool) -> Opened:
        """The :class:`Opened` for a response whose headers are in, or the failure."""
        status = response.status
        if status >= 300:
            failure = failure_for_status(status, response.headers.get("retry-after"))
            body = await response.read(_MAX_ERROR_BODY)
            if failure is not None:
                raise failure
            return Opened(response, body, streaming=False)
        if streaming and response.content_type == "text/event-stream":
            first = await response.read_some()
            if not first:
                raise connection_failed()
            return Opened(response, first, streaming=True)
        return Opened(response, await response.read(), streaming=False)
