"""User retries: a student asking the same question again soon, a sign the answer failed.

The question is the last user message, normalised (:func:`normalise_question`)
so that retyping it with other case, spacing or punctuation still matches in
any script. The detector is fed like a sink and works off the request path:
once per flush interval it checks every queued request's ``(student, question)``
key against a shared memory in one round trip. A hit within the window is a
retry: a ``uretry`` delta goes to the retried request's window bucket and
``on_retry`` is called (metrics, interaction log). A request the client
already flagged (``X-Tara-Retry: 1`` → ``Interaction.user_retry``) was counted
by the window recorder; the detector only remembers its question.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from tara import keys
from tara.telemetry.flush_loop import FlushLoop
from tara.telemetry.interactions import Interaction
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_recorder import WindowRecorder

log = logging.getLogger(__name__)

_DROP = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
"""Control and format characters (zero-width joiners in Indic text) vanish."""
_SPACE = frozenset({"Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs"})
"""Punctuation (the danda too) and symbols separate words like spaces, so ``2+2``
does not become ``22``; combining marks (Mn, Mc) are kept: they are letters' vowels."""


class _CharClasses(dict[int, int | None]):
    """``str.translate`` table built on demand: drop, space, or keep each character.

    Deciding per character in Python cost ~10 µs per question; ``translate``
    runs the loop in C and this table remembers each character's fate after
    the first time it is seen (a few hundred distinct ones in practice; past
    :data:`_CLASSES_BOUND` it stops remembering, so odd input cannot grow it).
    """

    def __missing__(self, code: int) -> int | None:
        ch = chr(code)
        cat = unicodedata.category(ch)
        if ch.isspace() or cat in _SPACE:
            fate: int | None = 0x20
        elif cat in _DROP:
            fate = None
        else:
            fate = code
        if len(self) < _CLASSES_BOUND:
            self[code] = fate
        return fate


_CLASSES_BOUND = 50_000
_CLASSES = _CharClasses()


def normalise_question(text: str) -> str:
    """Case-, spacing- and punctuation-insensitive form of a question, in any script."""
    # On ASCII, NFKC is the identity and casefold is lower(), which is cheaper.
    text = text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.translate(_CLASSES).split())


def question_of(messages: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The normalised text of the last user message, or ``None`` if there is none."""
    for message in reversed(messages or ()):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        question = normalise_question(content) if isinstance(content, str) else ""
        return question or None
    return None


def retry_key(student_hash: str, question: str) -> str:
    """A fixed-size, non-reversible key for one student's question."""
    data = f"{student_hash}\0{question}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class RetryMemory(Protocol):
    """Remembers recent question keys, shared by the replicas that use it."""

    async def check_and_mark(self, items: Sequence[tuple[str, float]]) -> list[bool]:
        """For each ``(key, expires_at)`` in order: whether the key was live, then
        keep it live until ``expires_at``. Raises on store failure."""


class MemoryRetryMemory:
    """A :class:`RetryMemory` for one process."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._sweep_at = 1024

    async def check_and_mark(self, items: Sequence[tuple[str, float]]) -> list[bool]:
        """Check and refresh each key in order."""
        now = self._clock()
        seen = []
        for key, expires in items:
            seen.append(self._expiry.get(key, 0.0) > now)
            self._expiry[key] = expires
        if len(self._expiry) >= self._sweep_at:
            self._expiry = {k: e for k, e in self._expiry.items() if e > now}
            self._sweep_at = max(1024, 2 * len(self._expiry))
        return seen


_CHECK_AND_MARK = """
local items = cjson.decode(ARGV[2])
local seen = {}
for k = 1, #items do
  local expires = string.format('%d', math.floor(items[k][2]) + 1)
  seen[k] = redis.call('SET', ARGV[1] .. items[k][1], '1', 'EXAT', expires, 'GET') and '1' or '0'
end
return table.concat(seen)
"""


_SEEN = ord("1")


class RedisRetryMemory:
    """A :class:`RetryMemory` in Redis: ``SET key 1 EXAT t GET`` per key in one script call.

    The window slides: each ask renews the key, so a question counts as a retry
    when the previous ask of it was within the window. The keys travel as one
    JSON argument and the script prefixes them with the namespace, and the
    answers come back as one string: redis-py spends microseconds of client
    CPU per command argument and per reply element, orjson a fraction of that
    (12 µs per request measured before, under 1 µs now). The keys are not
    declared in ``KEYS``; that only matters to Redis Cluster, which the
    gateway does not use.
    """

    def __init__(self, client: aioredis.Redis, *, namespace: str) -> None:
        self._prefix = keys.key(namespace, keys.USER_RETRY, "")
        self._script = client.register_script(_CHECK_AND_MARK)

    async def check_and_mark(self, items: Sequence[tuple[str, float]]) -> list[bool]:
        """Check and refresh every key in one round trip."""
        if not items:
            return []
        payload = orjson.dumps(items)  # a float's JSON form is its exact repr
        # One string of 0/1 flags: a reply array costs the client ~6 µs per item to parse.
        flags: bytes = await self._script(keys=[], args=[self._prefix, payload])
        return [flag == _SEEN for flag in flags]


class UserRetryDetector:
    """Finds user retries in the background and files them with the window recorder."""

    def __init__(
        self,
        memory: RetryMemory,
        recorder: WindowRecorder,
        settings: TelemetryStatsSettings | None = None,
        *,
        on_retry: Callable[[Interaction], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = settings or TelemetryStatsSettings()
        self._memory = memory
        self._recorder = recorder
        self._window = settings.user_retry_window_seconds
        self._max_queue = settings.max_pending_keys
        self._on_retry = on_retry
        self._clock = clock
        self._queue: list[Interaction] = []
        self._loop = FlushLoop(self.flush, settings.flush_interval, "user-retries")
        self.retries_found = 0
        """Retries the detector found (client-flagged ones excluded)."""
        self.flush_failures = 0
        """Checks the memory refused; their requests were kept for the next one."""
        self.dropped = 0
        """Requests never checked because the queue was full during an outage."""

    def record(self, interaction: Interaction) -> None:
        """Queue a finished request (sink interface: no I/O, never raises).

        Needs ``interaction.messages``: feed this sink before capture settings
        strip them. Requests without a student id are ignored.
        """
        if interaction.student_hash is None or not interaction.messages:
            return
        self._queue.append(interaction)
        if len(self._queue) > self._max_queue:
            excess = len(self._queue) - self._max_queue
            del self._queue[:excess]
            self.dropped += excess

    def start(self) -> None:
        """Check queued requests every flush interval in the background."""
        self._loop.start()

    async def flush(self) -> int:
        """Check every queued request in one round trip; returns the retries found."""
        batch, self._queue = self._queue, []
        now = self._clock()
        checks: list[tuple[Interaction, str, float]] = []
        for ix in batch:
            question = question_of(ix.messages)
            expires = ix.created_at + self._window
            if question is None or ix.student_hash is None or expires <= now:
                continue
            checks.append((ix, retry_key(ix.student_hash, question), expires))
        if not checks:
            return 0
        try:
            seen = await self._memory.check_and_mark([(k, e) for _, k, e in checks])
        except Exception as exc:
            self.flush_failures += 1
            self._queue[:0] = [ix for ix, _, _ in checks]
            log.warning("user retries: checking %d requests failed: %s", len(checks), exc)
            return 0
        found = 0
        for (ix, _, _), hit in zip(checks, seen, strict=True):
            if hit and not ix.user_retry:
                found += 1
                self._recorder.record_user_retry(self._recorder.key_for(ix))
                self._notify(ix)
        self.retries_found += found
        return found

    async def aclose(self) -> None:
        """Stop the loop and check what is left."""
        await self._loop.stop()

    def _notify(self, ix: Interaction) -> None:
        if self._on_retry is None:
            return
        try:
            self._on_retry(ix)
        except Exception:  # a broken callback must not lose the other retries
            log.exception("user retries: on_retry failed for %s", ix.request_id)
