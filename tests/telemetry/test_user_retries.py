"""User retries: question normalisation in every script, detection across replicas."""

from __future__ import annotations

import gc
import time
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tara.telemetry import user_retries
from tara.telemetry.interactions import Interaction
from tara.telemetry.stats_config import TelemetryStatsSettings
from tara.telemetry.user_retries import (
    Ask,
    MemoryRetryMemory,
    RedisRetryMemory,
    RetryFound,
    UserRetryDetector,
    normalise_question,
    question_of,
    retry_key,
)
from tara.telemetry.window_recorder import WindowRecorder
from tara.telemetry.window_store import bucket_start
from tara.telemetry.window_store_memory import MemoryWindowStore
from tara.telemetry.window_store_redis import RedisWindowStore

NOW = float(bucket_start(time.time(), 60))
AT_ONCE = TelemetryStatsSettings(user_retry_settle_seconds=0)
"""Decide each ask in the flush that shares it (one replica: nothing to wait for)."""


def ask(text: str, request_id: str = "r", **changes: Any) -> Interaction:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "created_at": NOW,
        "track": "tara-tutor",
        "segment": "all",
        "variant": "canary",
        "model": "ft-1",
        "student_hash": "s1",
        "subject": "physics",
        "language": "hi",
        "grade": "10",
        "status": 200,
        "messages": [
            {"role": "system", "content": "You are Tara."},
            {"role": "user", "content": text},
        ],
    }
    fields.update(changes)
    return Interaction(**fields)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is  Photosynthesis?", "what is photosynthesis"),
        ("प्रकाश संश्लेषण क्या है?", "  प्रकाश   संश्लेषण क्या है ।"),
        ("ஒளிச்சேர்க்கை என்றால் என்ன?", "ஒளிச்சேர்க்கை, என்றால் என்ன"),
        ("ஒளிச்சேர்க்கை என்றால் என்ன", "ஒளிச்சேர்க்கை\u200c என்றால்\n\tஎன்ன"),
        ("\u0958 क्या है", "\u0915\u093c क्या है"),  # precomposed qa vs ka + nukta
        ("ｆｏｒｃｅ = ma", "FORCE = MA"),
        ("2+2 = ?", "2 + 2"),
    ],
)
def test_same_question_normalises_alike(a: str, b: str) -> None:
    assert normalise_question(a) == normalise_question(b)
    assert normalise_question(a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("2+2", "22"),
        ("क्या है", "क है"),  # the virama and vowel sign are part of the word
        ("கை", "க"),
        ("what is force", "what is mass"),
    ],
)
def test_different_questions_stay_different(a: str, b: str) -> None:
    assert normalise_question(a) != normalise_question(b)


def test_question_is_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "Second"}, {"type": "image"}, 3]},
        {"role": "assistant", "content": "partial"},
    ]
    assert question_of(messages) == "second"
    assert question_of([{"role": "user", "content": " ?! "}]) is None
    assert question_of([{"role": "user", "content": None}]) is None
    assert question_of([{"role": "system", "content": "x"}]) is None
    assert question_of(None) is None


def test_retry_keys_depend_on_student_and_question() -> None:
    assert retry_key("s1", "q") == retry_key("s1", "q")
    assert len({retry_key("s1", "q"), retry_key("s2", "q"), retry_key("s1", "q2")}) == 3


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_memory_detector_counts_a_retry_within_the_window_only() -> None:
    clock = Clock(NOW)
    store = MemoryWindowStore()
    recorder = WindowRecorder(store)
    found: list[str] = []
    detector = UserRetryDetector(
        MemoryRetryMemory(clock=clock),
        recorder,
        AT_ONCE,
        on_retry=lambda ix: found.append(ix.request_id),
    )
    detector.record(ask("What is force?", "r1"))
    detector.record(ask("what is force", "r2", created_at=NOW + 300))
    detector.record(ask("What is force?", "other", student_hash="s2"))
    detector.record(ask("What is mass?", "r3"))
    clock.now = NOW + 300
    assert await detector.flush() == 1
    clock.now = NOW + 1000  # r4 comes 700 s after r2: a new question again
    detector.record(ask("What is force?", "r4", created_at=NOW + 1000))
    assert await detector.flush() == 0
    assert found == ["r2"]
    await recorder.flush()
    stats = await store.read("tara-tutor", "all", "canary", NOW, NOW + 400)
    assert stats.user_retries == 1


async def test_anonymous_wordless_and_stale_requests_are_skipped() -> None:
    clock = Clock(NOW + 10_000)
    detector = UserRetryDetector(
        MemoryRetryMemory(clock=clock), WindowRecorder(MemoryWindowStore()), clock=clock
    )
    for _ in range(2):
        detector.record(ask("q", student_hash=None))
        detector.record(ask("q", messages=None))
        detector.record(ask("!!!", created_at=NOW + 10_000))
        detector.record(ask("q"))  # older than the window by the time it is checked
    assert await detector.flush() == 0


async def test_a_failed_canary_attempt_is_no_earlier_ask_of_its_answer() -> None:
    """The stable answer that replaced a failed canary attempt carries its question."""
    detector = UserRetryDetector(MemoryRetryMemory(), WindowRecorder(MemoryWindowStore()))
    detector.record(ask("q", "f-1-canary", status=502))
    detector.record(ask("q", "f-1", created_at=NOW + 1, variant="stable", fallback=True))
    assert await detector.flush(decide_all=True) == 0
    detector.record(ask("q", "f-2", created_at=NOW + 2))
    assert await detector.flush(decide_all=True) == 1  # the answer itself was an ask


@pytest.mark.redis
async def test_a_client_flagged_retry_is_counted_once(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    store = RedisWindowStore(redis_client, namespace=namespace)
    recorder = WindowRecorder(store)
    found: list[str] = []
    detector = UserRetryDetector(
        RedisRetryMemory(redis_client, namespace=namespace),
        recorder,
        AT_ONCE,
        on_retry=lambda ix: found.append(ix.request_id),
    )
    for ix in (ask("q", "r1"), ask("q", "r2", user_retry=True)):
        recorder.record(ix)
        detector.record(ix)
    assert await detector.flush() == 0
    await recorder.flush()
    assert (await store.read("tara-tutor", "all", "canary", NOW, NOW + 10)).user_retries == 1
    assert found == []


@pytest.mark.redis
async def test_two_replicas_sharing_redis_see_each_others_questions(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    store = RedisWindowStore(redis_client, namespace=namespace)
    found: list[str] = []

    def replica() -> tuple[UserRetryDetector, WindowRecorder]:
        recorder = WindowRecorder(store)
        memory = RedisRetryMemory(redis_client, namespace=namespace)
        detector = UserRetryDetector(
            memory, recorder, AT_ONCE, on_retry=lambda ix: found.append(ix.request_id)
        )
        return detector, recorder

    (a, _), (b, rec_b) = replica(), replica()
    a.record(ask("प्रकाश संश्लेषण क्या है?", "hi-1"))
    a.record(ask("ஒளிச்சேர்க்கை என்றால் என்ன?", "ta-1", language="ta", variant="stable"))
    assert await a.flush() == 0
    b.record(ask("प्रकाश संश्लेषण  क्या है", "hi-2", created_at=NOW + 20))
    b.record(ask("ஒளிச்சேர்க்கை என்றால் என்ன", "ta-2", language="ta", variant="stable"))
    b.record(ask("प्रकाश संश्लेषण क्या है?", "other-student", student_hash="s9"))
    assert await b.flush() == 2
    assert sorted(found) == ["hi-2", "ta-2"]
    await rec_b.flush()
    # Each retry is filed in the bucket of the request that repeated the question.
    assert (await store.read("tara-tutor", "all", "canary", NOW + 20, NOW + 30)).user_retries == 1
    assert (await store.read("tara-tutor", "all", "canary", NOW, NOW + 20)).user_retries == 0
    assert (await store.read("tara-tutor", "all", "stable", NOW, NOW + 10)).user_retries == 1
    hindi = retry_key("s1", normalise_question("प्रकाश संश्लेषण क्या है"))
    assert 0 < await redis_client.ttl(f"{namespace}:uretry:{hindi}") <= 600 + 21


@pytest.fixture
async def proxied_client(redis_proxy: Any) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_proxy.url, retry=Retry(NoBackoff(), 0))
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_outage_keeps_requests_for_the_next_check(
    redis_proxy: Any, proxied_client: aioredis.Redis, namespace: str
) -> None:
    def broken(ix: Interaction) -> None:
        raise RuntimeError(ix.request_id)

    detector = UserRetryDetector(
        RedisRetryMemory(proxied_client, namespace=namespace),
        WindowRecorder(MemoryWindowStore()),
        AT_ONCE,
        on_retry=broken,
    )
    detector.record(ask("q", "r1"))
    detector.record(ask("q", "r2"))
    await redis_proxy.stop()
    assert await detector.flush() == 0
    assert detector.flush_failures == 1
    await redis_proxy.start()
    assert await detector.flush() == 1  # found despite the callback failing
    assert detector.retries_found == 1


@pytest.mark.redis
async def test_queue_is_bounded_and_memory_sweeps_expired_keys(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    clock = Clock(NOW)
    memory = MemoryRetryMemory(clock=clock)
    detector = UserRetryDetector(
        memory,
        WindowRecorder(MemoryWindowStore()),
        TelemetryStatsSettings(user_retry_backlog=2),
        clock=clock,
    )
    for i in range(3):
        detector.record(ask(f"q{i}"))
    assert detector.dropped == 1
    assert await detector.flush() == 0
    many = [Ask(f"k{i}", NOW, f"r{i}") for i in range(1100)]
    assert await memory.share_and_check(many, many) == [False] * 1100
    clock.now = NOW + 1201  # two windows later, the next sweep drops every older key
    later = [Ask(f"new-{i}", NOW + 1201, f"r{i}") for i in range(1200)]
    assert await memory.share_and_check(later, later[:1]) == [False]
    assert len(memory) == 1200
    assert await RedisRetryMemory(redis_client, namespace=namespace).share_and_check([], []) == []


def _reference_normalise(text: str) -> str:
    """The rule spelled out character by character, as the docs state it."""
    out = []
    for ch in unicodedata.normalize("NFKC", text).casefold():
        cat = unicodedata.category(ch)
        if ch.isspace() or cat[0] in "PZ" or cat in {"Sm", "Sc", "Sk", "So"}:
            out.append(" ")
        elif cat[0] == "C":
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())


@pytest.mark.parametrize(
    "text",
    [
        "Hello,\x00World\t!\x7f  ",  # ASCII fast path: controls drop, punctuation spaces
        "A\u00a0b\u2003c\u200bd\ufeffe",  # no-break and em spaces, zero-width characters
        "ＡＢＣ？ Straße ǅ",  # full-width forms, casefolding beyond lower()
        "प्रश्न\u200d।क्या है?",  # Devanagari: joiner dropped, danda is punctuation
        "x\u0301 ² ½ ﬁ",  # combining mark kept; NFKC compatibility forms
        "".join(chr(c) for c in range(0x20, 0x250)),
        "".join(chr(c) for c in range(128)),  # every ASCII character, through the byte table
        "\x1c\x1d\x1e\x1fa\x0bb\x0cc",  # separators str.split() splits on, bytes.split() not
    ],
)
def test_normalisation_follows_the_per_character_rule(text: str) -> None:
    assert normalise_question(text) == _reference_normalise(text)
    # The cached character table gives the same answer the second time.
    assert normalise_question(text) == _reference_normalise(text)


@pytest.fixture(params=["memory", "redis"])
async def memory(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Any]:
    """Each :class:`RetryMemory`, with a 600 s window."""
    if request.param == "memory":
        yield MemoryRetryMemory(600.0)
        return
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    yield RedisRetryMemory(client, namespace=namespace, window=600.0)
    found = [k async for k in client.scan_iter(match=f"{namespace}:*")]
    if found:
        await client.delete(*found)
    await client.aclose()


@pytest.mark.redis
async def test_memory_finds_an_earlier_ask_whatever_order_they_are_shared_in(memory: Any) -> None:
    now = time.time()
    first, second = Ask("k", now, "r-b"), Ask("k", now + 0.4, "r-a")
    # The later ask is shared (and checked) first, as when its replica flushes first.
    assert await memory.share_and_check([second], [second]) == [False]
    assert await memory.share_and_check([first], [first, second]) == [False, True]
    # Equal arrival times: the smaller request id is the earlier one.
    tie_a, tie_b = Ask("t", now, "r-1"), Ask("t", now, "r-2")
    assert await memory.share_and_check([tie_b, tie_a], [tie_b, tie_a]) == [True, False]
    # Outside the window, or another key: not a retry.
    late = Ask("k", now + 0.4 + 600.5, "r-c")
    other = Ask("k2", now + 1, "r-d")
    assert await memory.share_and_check([late, other], [late, other]) == [False, False]
    assert await memory.share_and_check([], []) == []


@pytest.mark.redis
async def test_redis_keys_live_a_window_past_their_newest_ask(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    memory = RedisRetryMemory(redis_client, namespace=namespace, window=100.0)
    now = time.time()
    asks = [Ask("k1", now + 0.5, "a"), Ask("k1", now + 50.25, "b"), Ask("k1", now - 500, "old")]
    await memory.share_and_check(asks, [])
    assert await redis_client.expiretime(f"{namespace}:uretry:k1") == int(now + 50.25 + 100) + 1
    # Asks two windows older than the newest are trimmed.
    assert await redis_client.zrange(f"{namespace}:uretry:k1", 0, -1) == [b"a", b"b"]


async def test_a_shared_ask_is_decided_only_once_it_has_settled() -> None:
    clock = Clock(NOW)
    found: list[str] = []
    settings = TelemetryStatsSettings(user_retry_settle_seconds=3)
    replicas = [
        UserRetryDetector(
            memory,
            WindowRecorder(MemoryWindowStore()),
            settings,
            on_retry=lambda ix: found.append(ix.request_id),
            clock=clock,
        )
        for memory in [MemoryRetryMemory(clock=clock)] * 2
    ]
    fast, slow = replicas
    slow.record(ask("q", "first", created_at=NOW))
    fast.record(ask("q", "second", created_at=NOW + 0.5))
    clock.now = NOW + 1
    assert await fast.flush() == 0  # shared, not decided: the slow replica has not shared yet
    assert fast.pending == 1
    clock.now = NOW + 2
    assert await slow.flush() == 0
    clock.now = NOW + 4
    assert await fast.flush() == 1
    clock.now = NOW + 5
    assert await slow.flush() == 0
    assert found == ["second"]
    assert fast.pending == slow.pending == 0


async def test_shut_down_decides_what_has_not_settled() -> None:
    found: list[str] = []
    detector = UserRetryDetector(
        MemoryRetryMemory(),
        WindowRecorder(MemoryWindowStore()),
        TelemetryStatsSettings(user_retry_settle_seconds=3600),
        on_retry=lambda ix: found.append(ix.request_id),
    )
    now = time.time()
    detector.record(ask("q", "r1", created_at=now))
    detector.record(ask("q", "r2", created_at=now + 1))
    assert await detector.flush() == 0
    await detector.aclose()
    assert found == ["r2"]


async def test_asks_waiting_to_settle_hold_nothing_for_the_collector() -> None:
    """At 4,500 requests/s, 20,000 asks wait out the flush and the 3 s settle time. Each
    was five objects the collector traced (the record, its two lists, an ask, an entry),
    then the record alone; the collection that traverses them holds the event loop. An
    ask is now strings and numbers in lists, and a retry is flagged in the log by id."""
    found: list[RetryFound] = []
    detector = UserRetryDetector(
        MemoryRetryMemory(),
        WindowRecorder(MemoryWindowStore()),
        TelemetryStatsSettings(user_retry_settle_seconds=3600),
        on_retry=found.append,
    )
    original = ask("question 3", "r3", created_at=NOW, tags=["slow"])
    retry = ask("question 3", "again", created_at=NOW + 10, answer="Light", latency_s=0.5)
    detector.record(original)
    detector.record(retry)
    gc.collect()
    tracked = len(gc.get_objects())
    for i in range(1000):
        detector.record(ask(f"another question {i}", f"more-{i}", created_at=NOW + 20))
    assert await detector.flush() == 0
    assert detector.pending == 1002
    gc.collect()
    assert len(gc.get_objects()) - tracked < 100
    await detector.aclose()
    labels = (retry.track, retry.segment, retry.variant, retry.subject, retry.language)
    assert found == [RetryFound("again", NOW + 10, *labels)]


@pytest.mark.parametrize("code", range(128))
def test_each_ascii_character_takes_the_fate_of_the_reference(code: int) -> None:
    text = f"Ab{chr(code)}c {chr(code)}"
    assert normalise_question(text) == _reference_normalise(text)


def test_the_character_table_stops_growing_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_retries, "_CLASSES_BOUND", 0)
    rare = "\ua8f2\U0001fa90"  # unchanged by NFKC, seen by no other test
    assert normalise_question(f"A {rare}!") == _reference_normalise(f"A {rare}!")
    assert all(ord(ch) not in user_retries._CLASSES for ch in rare)
    monkeypatch.undo()
    normalise_question(rare)
    assert all(ord(ch) in user_retries._CLASSES for ch in rare)
