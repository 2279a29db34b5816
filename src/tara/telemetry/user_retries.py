"""User retries: a student asking the same question again soon, a sign the answer failed.

The question is the last user message, normalised (:func:`normalise_question`)
so that retyping it with other case, spacing or punctuation still matches in
any script. The detector is fed like a sink, once an answer is sent, and talks
to the shared memory off the request path.
Each ask is keyed by ``(student, question)`` and is a retry when an *earlier*
ask of the same key (by arrival time, then request id) came within the window
before it, whichever replica served it. Replicas flush at their own pace, so
the later ask may reach the shared memory first; deciding at once would then
flag the original. So once per flush interval the detector shares its new
asks and decides those it shared ``user_retry_settle_seconds`` ago, by when
every replica has shared its own: one round trip for both. A retry sends a
``uretry`` delta to the retried request's window bucket and calls
``on_retry`` (metrics, interaction log). A request the client already flagged
(``X-Tara-Retry: 1`` → ``Interaction.user_retry``) was counted by the window
recorder; the detector only shares its question.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from tara import keys
from tara.telemetry.flush_loop import FlushLoop
from tara.telemetry.interactions import Interaction, OnDrop, is_canary_attempt
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.window_recorder import WindowRecorder

if TYPE_CHECKING:  # the memory state never loads the Redis client
    import redis.asyncio as aioredis

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
        fate = _fate(code)
        if len(self) < _CLASSES_BOUND:
            self[code] = fate
        return fate


def _fate(code: int) -> int | None:
    """A character's fate in a question: a space (``0x20``), dropped (``None``), or kept."""
    ch = chr(code)
    cat = unicodedata.category(ch)
    if ch.isspace() or cat in _SPACE:
        return 0x20
    if cat in _DROP:
        return None
    return code


_CLASSES_BOUND = 50_000
_CLASSES = _CharClasses()
_ASCII_FATES = [_fate(code) for code in range(128)]
_ASCII_TABLE = bytes(code if fate is None else fate for code, fate in enumerate(_ASCII_FATES))
_ASCII_TABLE += bytes(range(128, 256))
_ASCII_DROP = bytes(code for code, fate in enumerate(_ASCII_FATES) if fate is None)
"""The same fates for ASCII as a byte table: ``bytes.translate`` does a question in one
pass of C, where ``str.translate`` looks each character up in :data:`_CLASSES`
(~13k instructions a typical question with the rest of :func:`question_of`)."""


def normalise_question(text: str) -> str:
    """Case-, spacing- and punctuation-insensitive form of a question, in any script."""
    if text.isascii():
        # On ASCII, NFKC is the identity and casefold is lower(), which is cheaper. After the
        # table every whitespace character is a space, so bytes.split() splits as str.split().
        raw = text.lower().encode("ascii").translate(_ASCII_TABLE, _ASCII_DROP)
        return b" ".join(raw.split()).decode("ascii")
    text = unicodedata.normalize("NFKC", text).casefold()
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


AskFields = tuple[str, float, str]
"""An ask as a plain tuple: key, arrival time, request id (what the detector hands the
memory: a plain tuple is made and encoded in C, a named one costs ~0.5 µs in Python)."""


class Ask(NamedTuple):
    """One request's question as the shared memory sees it (its fields by name)."""

    key: str
    """:func:`retry_key` of the student and the question."""
    created_at: float
    """When the request arrived (Unix seconds): what "earlier" means."""
    request_id: str
    """Breaks ties between asks that arrived in the same instant."""


def _wire(asks: Sequence[AskFields]) -> bytes:
    """Asks as one JSON array of ``[key, created_at, request_id]`` (a float's JSON is exact)."""
    return orjson.dumps(asks, default=tuple)  # default: a named Ask


class RetryMemory(Protocol):
    """Remembers recent asks, shared by the replicas that use it."""

    async def share_and_check(
        self, shared: Sequence[AskFields], checked: Sequence[AskFields]
    ) -> list[bool]:
        """Remember every ask in ``shared``; then say, for each ask in ``checked`` (shared
        now or before), whether an earlier ask of its key came within the window before
        it. Raises on store failure (and then remembers nothing)."""


ASKS_PER_QUESTION = 8
"""Asks of one student's question the memory backend keeps (the newest): a student
asking the same thing a hundred times is still one question's worth of memory."""


def _pairs(flat: tuple[float | str, ...]) -> list[tuple[float, str]]:
    """``(created_at, request_id)`` pairs of a flat tuple of asks."""
    return list(zip(flat[::2], flat[1::2], strict=True))  # type: ignore[arg-type]


class MemoryRetryMemory:
    """A :class:`RetryMemory` for one process, holding at most ``size`` questions.

    A question (a key) is kept with its newest asks, least recently asked
    first; each call forgets the questions not asked for two windows (no
    later ask can be a retry of them) and, past ``size``, the least recently
    asked, telling ``on_drop("memory_full", n)`` how many of those were still
    inside the window (a retry of them now goes unnoticed).
    """

    def __init__(
        self,
        window: float = 600.0,
        *,
        size: int = 10_000,
        clock: Callable[[], float] = time.time,
        on_drop: OnDrop | None = None,
    ) -> None:
        self._window = window
        self._size = size
        self._clock = clock
        self.on_drop: OnDrop = on_drop or (lambda reason, count: None)
        """Told ``("memory_full", n)`` for questions forgotten inside the window."""
        self._asks: dict[str, tuple[float | str, ...]] = {}
        """Per question its asks, flat: ``(created_at, request_id, created_at, ...)`` (one
        tuple is the smallest container: a question asked once costs ~250 bytes)."""

    def __len__(self) -> int:
        """Questions remembered."""
        return len(self._asks)

    def asks_held(self) -> int:
        """Asks remembered, over every question."""
        return sum(len(held) for held in self._asks.values()) // 2

    async def share_and_check(
        self, shared: Sequence[AskFields], checked: Sequence[AskFields]
    ) -> list[bool]:
        """Remember, then check each ask, then forget what is too old or beyond the size."""
        asks = self._asks
        for key, created_at, request_id in shared:
            held = (*asks.pop(key, ()), created_at, request_id)
            if len(held) > 2 * ASKS_PER_QUESTION:
                newest = sorted(_pairs(held))[-ASKS_PER_QUESTION:]
                held = tuple(x for pair in newest for x in pair)
            asks[key] = held  # to the recent end
        seen = []
        for key, created_at, request_id in checked:
            since, this = created_at - self._window, (created_at, request_id)
            earlier = _pairs(asks.get(key, ()))
            seen.append(any(t >= since and (t, rid) < this for t, rid in earlier))
        self._forget()
        return seen

    def _forget(self) -> None:
        now = self._clock()
        stale, live = now - 2 * self._window, now - self._window
        asks = self._asks
        over = len(asks) - self._size
        victims: list[str] = []
        counted = 0
        # Least recently asked first: stop at the first question still needed.
        for key, held in asks.items():
            newest = max(t for t, _ in _pairs(held))
            if newest > stale and len(victims) >= over:
                break
            victims.append(key)
            counted += newest > live
        for key in victims:
            del asks[key]
        if counted:
            self.on_drop("memory_full", counted)


_SHARE_AND_CHECK = """
local prefix, window = ARGV[1], tonumber(ARGV[2])
local function num(x) return string.format('%.17g', x) end
for _, ask in ipairs(cjson.decode(ARGV[3])) do
  local key = prefix .. ask[1]
  redis.call('ZADD', key, num(ask[2]), ask[3])
  local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. num(newest - 2 * window))
  redis.call('EXPIREAT', key, math.floor(newest + window) + 1)
end
local seen = {}
for i, ask in ipairs(cjson.decode(ARGV[4])) do
  local created, id = ask[2], ask[3]
  local found = redis.call('ZRANGEBYSCORE', prefix .. ask[1], num(created - window),
                           num(created), 'WITHSCORES')
  seen[i] = '0'
  for j = 1, #found, 2 do
    local at = tonumber(found[j + 1])
    if at < created or (at == created and found[j] < id) then
      seen[i] = '1'
      break
    end
  end
end
return table.concat(seen)
"""


_SEEN = ord("1")


class RedisRetryMemory:
    """A :class:`RetryMemory` in Redis: a sorted set of asks per key, one script call.

    Each key holds its asks' request ids scored by arrival time and lives a
    window past its newest ask (asks two windows older than that are trimmed).
    The asks travel as two JSON arguments and the script prefixes the keys
    with the namespace; the answers come back as one string of 0/1 flags:
    redis-py spends microseconds of client CPU per command argument and per
    reply element, orjson a fraction of that. The keys are not declared in
    ``KEYS``; that only matters to Redis Cluster, which the gateway does not
    use. Times go to Redis as ``%.17g``, so equal arrivals compare equal.
    """

    def __init__(self, client: aioredis.Redis, *, namespace: str, window: float = 600.0) -> None:
        self._prefix = keys.key(namespace, keys.USER_RETRY, "")
        self._window = window
        self._script = client.register_script(_SHARE_AND_CHECK)

    async def share_and_check(
        self, shared: Sequence[AskFields], checked: Sequence[AskFields]
    ) -> list[bool]:
        """Share and check in one round trip."""
        if not shared and not checked:
            return []
        flags: bytes = await self._script(
            keys=[], args=[self._prefix, repr(self._window), _wire(shared), _wire(checked)]
        )
        return [flag == _SEEN for flag in flags]


class RetryFound(NamedTuple):
    """A request the detector found the student asked again: what counting it needs."""

    request_id: str
    created_at: float
    track: str
    segment: str
    variant: str
    subject: str | None
    language: str | None


class _Asks:
    """Asks in parallel lists of strings and numbers, oldest first.

    A busy gateway holds seconds of asks (~18,000 at 4,500 requests a second).
    Each is its key, arrival, id and the labels a retry is counted under, never
    its record: the interaction log gets only a flag for a retry
    (:meth:`~tara.telemetry.log_writer.InteractionLogWriter.record_user_retry`).
    Strings and numbers in lists are no work for the garbage collector, and the
    labels are shared strings.
    """

    __slots__ = (
        "counted",
        "created",
        "ids",
        "keys",
        "languages",
        "segments",
        "shared_at",
        "subjects",
        "tracks",
        "variants",
    )

    def __init__(self) -> None:
        self.shared_at: list[float] = []
        """When each ask was shared with the memory (non-decreasing; queued asks have none)."""
        self.keys: list[str] = []
        self.created: list[float] = []
        self.ids: list[str] = []
        self.counted: list[bool] = []
        """Whether the client flagged it (counted already): shared, but never decided."""
        self.tracks: list[str] = []
        self.segments: list[str] = []
        self.variants: list[str] = []
        self.subjects: list[str | None] = []
        self.languages: list[str | None] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, key: str, ix: Interaction) -> None:
        self.keys.append(key)
        self.created.append(ix.created_at)
        self.ids.append(ix.request_id)
        self.counted.append(ix.user_retry)
        self.tracks.append(ix.track)
        self.segments.append(ix.segment)
        self.variants.append(ix.variant)
        self.subjects.append(ix.subject)
        self.languages.append(ix.language)

    def asks(self) -> list[AskFields]:
        """The asks, for the memory."""
        return list(zip(self.keys, self.created, self.ids, strict=True))

    def found(self, i: int) -> RetryFound:
        """Ask ``i`` as a found retry."""
        return RetryFound(
            self.ids[i], self.created[i], self.tracks[i], self.segments[i], self.variants[i],
            self.subjects[i], self.languages[i],
        )  # fmt: skip

    def part(self, rows: slice | list[int]) -> _Asks:
        """The asks at ``rows`` (a slice, or indexes in order)."""
        part = _Asks()
        for name in self.__slots__:
            column = getattr(self, name)
            if not column:  # queued asks: not shared yet
                continue
            setattr(
                part, name, column[rows] if isinstance(rows, slice) else [column[i] for i in rows]
            )
        return part

    def extend(self, other: _Asks) -> None:
        """Append ``other``'s asks."""
        for name in self.__slots__:
            getattr(self, name).extend(getattr(other, name))

    def drop_oldest(self, count: int) -> None:
        """Forget the ``count`` oldest asks (in place: a full backlog drops one a request)."""
        for name in self.__slots__:
            del getattr(self, name)[:count]


class UserRetryDetector:
    """Finds user retries in the background and files them with the window recorder."""

    def __init__(
        self,
        memory: RetryMemory,
        recorder: WindowRecorder,
        settings: TelemetryStatsSettings | None = None,
        *,
        on_retry: Callable[[RetryFound], None] | None = None,
        on_drop: OnDrop | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = settings or TelemetryStatsSettings()
        self._on_drop: OnDrop = on_drop or (lambda reason, count: None)
        self._memory = memory
        self._recorder = recorder
        self._window = settings.user_retry_window_seconds
        self._settle = settings.user_retry_settle_seconds
        self._max_queue = settings.user_retry_backlog
        self._on_retry = on_retry
        self._clock = clock
        self._queue = _Asks()
        self._waiting = _Asks()
        self._closing = False
        self._loop = FlushLoop(self.flush, settings.flush_interval, "user-retries", phase=2 / 3)
        self.retries_found = 0
        """Retries the detector found (client-flagged ones excluded)."""
        self.flush_failures = 0
        """Checks the memory refused; their requests were kept for the next one."""
        self.dropped = 0
        """Requests never checked because the backlog was full (``on_drop("backlog_full")``)."""

    def record(self, interaction: Interaction) -> None:
        """Queue a finished request's ask (sink interface: no I/O).

        Needs ``interaction.messages``: feed this sink before capture settings
        strip them. Requests without a student id or a question are ignored,
        and so are the records of failed canary attempts: the stable answer
        that replaced one carries the same question and would look like a
        retry of it.

        The question is normalised and hashed here, a few microseconds a
        request once its answer is sent: at the flush, a second's worth of them
        at once (~25 ms at 2,500 requests a second) held the event loop, the
        longest stall of a busy gateway.
        """
        ix = interaction
        if ix.student_hash is None or not ix.messages or is_canary_attempt(ix.request_id):
            return
        question = question_of(ix.messages)
        if question is None:
            return
        self._queue.add(retry_key(ix.student_hash, question), ix)
        excess = self.pending - self._max_queue
        if excess > 0:
            self._queue.drop_oldest(excess)
            self._dropped(excess)

    @property
    def pending(self) -> int:
        """Requests queued or shared but not yet decided."""
        return len(self._queue) + len(self._waiting)

    def start(self) -> None:
        """Share and decide every flush interval in the background."""
        self._loop.start()

    async def flush(self, *, decide_all: bool = False) -> int:
        """Share new asks and decide the settled ones in one round trip; the retries found.

        ``decide_all`` (and the last flush at shut-down) decides every shared
        ask now, settled or not.
        """
        batch, self._queue = self._queue, _Asks()
        now = self._clock()
        stale = now - self._window
        if batch and min(batch.created) <= stale:
            # Asks older than the window can neither be retries nor be retried.
            batch = batch.part([i for i, at in enumerate(batch.created) if at > stale])
        undecided = self._waiting.part(slice(None))
        if any(batch.counted):  # flagged by the client and counted already: shared only
            undecided.extend(batch.part([i for i, c in enumerate(batch.counted) if not c]))
        else:
            undecided.extend(batch)
        undecided.shared_at.extend([now] * (len(undecided) - len(undecided.shared_at)))
        if decide_all or self._closing:
            cut = len(undecided)
        else:
            cut = bisect.bisect_right(undecided.shared_at, now - self._settle)
        due, waiting = undecided.part(slice(cut)), undecided.part(slice(cut, None))
        if not batch and not due:
            return 0
        try:
            seen = await self._memory.share_and_check(batch.asks(), due.asks())
        except Exception as exc:
            self.flush_failures += 1
            batch.extend(self._queue)
            self._queue = batch
            log.warning("user retries: checking %d requests failed: %s", len(batch), exc)
            return 0
        self._waiting = waiting.part(slice(-self._max_queue, None))
        self._dropped(len(waiting) - len(self._waiting))
        hits = [i for i, hit in enumerate(seen) if hit]
        for i in hits:
            retry = due.found(i)
            self._recorder.record_user_retry(self._recorder.key_for(retry))
            self._notify(retry)
        self.retries_found += len(hits)
        return len(hits)

    async def aclose(self) -> None:
        """Stop the loop and decide what is left."""
        self._closing = True
        await self._loop.stop()

    def _dropped(self, count: int) -> None:
        if count > 0:
            self.dropped += count
            self._on_drop("backlog_full", count)

    def _notify(self, retry: RetryFound) -> None:
        if self._on_retry is None:
            return
        try:
            self._on_retry(retry)
        except Exception:  # a broken callback must not lose the other retries
            log.exception("user retries: on_retry failed for %s", retry.request_id)
