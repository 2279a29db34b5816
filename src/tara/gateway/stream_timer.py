"""The idle and total timeouts of a relayed stream, checked lazily.

Rescheduling an ``asyncio.timeout`` around every chunk (armed while waiting
on the upstream, disarmed while sending to the client) cancelled one timer
and created another twice per chunk: a measurable share of a streamed
answer's CPU. :class:`StreamTimer` instead keeps one timer per idle period:
the relay only notes when it started waiting (:attr:`StreamTimer.waiting_since`)
or that it is sending (``None``), and the timer, when it fires, checks that
note and either cancels the relaying task or sets itself again. A slow client
is not an idle upstream: while a send is in progress nothing expires.
"""

from __future__ import annotations

import asyncio
import time


class StreamTimer:
    """Cancels the current task once the upstream has been silent ``idle`` seconds,
    or at ``deadline``, whichever comes first, unless a send is in progress.

    Times are ``time.monotonic()`` (the relay reads that clock anyway, to the
    microsecond; uvloop's loop clock counts milliseconds).

    ``expired`` tells the task's ``CancelledError`` handler that the cancellation was
    this timer's (and not, say, a client disconnect); :meth:`stop` ends it.
    """

    __slots__ = ("_deadline", "_handle", "_idle", "_loop", "_task", "expired", "waiting_since")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle: float, deadline: float) -> None:
        task = asyncio.current_task(loop)
        assert task is not None
        self._loop = loop
        self._task = task
        self._idle = idle
        self._deadline = deadline
        self.expired = False
        now = time.monotonic()
        self.waiting_since: float | None = now
        """When the relay started waiting on the upstream; ``None`` while sending."""
        self._handle: asyncio.TimerHandle | None = loop.call_later(
            min(now + idle, deadline) - now, self._check
        )

    def _check(self) -> None:
        now = time.monotonic()
        since = self.waiting_since
        if since is not None and now >= min(since + self._idle, self._deadline):
            self.expired = True
            self._handle = None
            self._task.cancel()
            return
        start = now if since is None else since
        due = min(start + self._idle, self._deadline)
        self._handle = self._loop.call_later(due - now, self._check)

    def claim(self) -> bool:
        """Whether a ``CancelledError`` the task caught was this timer's; if so, withdraw it.

        The cancellation request is taken back (``uncancel``), so the task goes
        on to report a timeout instead of ending cancelled.
        """
        if not self.expired:
            return False
        self._task.uncancel()
        return True

    def stop(self) -> None:
        """No more checks (the stream is over)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
