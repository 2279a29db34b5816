"""Simulated students: who they are, what they ask, how they rate (pure), and a classroom (I/O).

Students differ by subject, language and grade, and by how lenient they
rate. Questions arrive as a Poisson process (exponential gaps, so bursts
and lulls come naturally). A student's rating follows the quality of the
model that answered (``X-Tara-Model`` looked up in the sandbox's model
list) plus their leniency and some noise; a poor or failed answer often
gets a regenerate tap (the same question again with ``X-Tara-Retry: 1``),
and now and then a student simply asks the same question again.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tara.demo.questions import GRADES, LANGUAGE_SHARES, LANGUAGES, QUESTIONS, SUBJECTS

RATE_PROBABILITY = 0.75
"""Share of answers a student rates."""
REGENERATE_POOR = 0.5
"""Chance of a regenerate tap after an answer rated 1 or 2."""
REGENERATE_FAILED = 0.8
"""Chance of a regenerate tap after a request that failed."""
REPEAT_PROBABILITY = 0.08
"""Chance a student asks their previous question again, without tapping regenerate."""
STREAM_PROBABILITY = 0.5
"""Share of requests the app streams."""
POOR_TAGS: tuple[str, ...] = ("wrong", "unclear", "irrelevant", "incomplete", "language")


@dataclass(frozen=True, slots=True)
class Student:
    """One simulated student."""

    id: str
    subject: str
    language: str
    grade: str
    leniency: float
    """Added to the mean rating: a generous student rates a little higher."""


def population(
    rng: random.Random,
    size: int,
    mix: Sequence[tuple[tuple[str, str], float]] = (),
    prefix: str = "student",
) -> list[Student]:
    """``size`` students spread over subjects, languages (Hindi most) and grades.

    ``mix`` (``((subject, language), share)`` pairs) puts them in those
    segments only, in those shares.
    """
    students = []
    for i in range(size):
        if mix:
            subject, language = rng.choices([m[0] for m in mix], weights=[m[1] for m in mix])[0]
        else:
            subject = rng.choice(SUBJECTS)
            language = rng.choices(LANGUAGES, weights=LANGUAGE_SHARES)[0]
        students.append(
            Student(
                id=f"{prefix}-{i:04d}",
                subject=subject,
                language=language,
                grade=rng.choice(GRADES),
                leniency=round(rng.uniform(-0.3, 0.3), 2),
            )
        )
    return students


def draw_rating(quality: float, leniency: float, rng: random.Random) -> int:
    """A 1-5 rating of an answer by a model of ``quality`` (0..1): mean ``1 + 4 * quality``."""
    mean = 1 + 4 * quality + leniency
    return min(5, max(1, round(rng.gauss(mean, 0.8))))


def feedback_body(request_id: str, rating: int, rng: random.Random) -> dict[str, Any]:
    """What the app posts to ``/v1/feedback``: poor ratings often carry a reason tag."""
    body: dict[str, Any] = {"request_id": request_id, "rating": rating}
    if rating <= 2 and rng.random() < 0.7:
        body["tags"] = [rng.choice(POOR_TAGS)]
    return body


def pick_question(student: Student, rng: random.Random, previous: str | None) -> str:
    """The next question: sometimes the previous one again, else one of the student's topic."""
    if previous is not None and rng.random() < REPEAT_PROBABILITY:
        return previous
    fresh = [q for q in QUESTIONS[(student.subject, student.language)] if q != previous]
    return rng.choice(fresh)


def wants_regenerate(rating: int | None, rng: random.Random) -> bool:
    """Whether the student taps regenerate after a rating (``None``: the request failed)."""
    if rating is None:
        return rng.random() < REGENERATE_FAILED
    return rating <= 2 and rng.random() < REGENERATE_POOR


@dataclass(frozen=True, slots=True)
class Answer:
    """What the gateway said to one question."""

    ok: bool
    variant: str | None = None
    model: str | None = None
    request_id: str | None = None


def answer_complete(body: bytes, streamed: bool) -> bool:
    """Whether a 200 response carried a whole answer (a cut stream lacks ``[DONE]``)."""
    if streamed:
        return b"data: [DONE]" in body and b'"error"' not in body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and bool(data.get("choices"))


Perceived = Callable[[str, str, str, float], float]
"""The quality a student of ``(subject, language)`` sees in ``model`` of sandbox ``quality``."""


def as_served(_subject: str, _language: str, _model: str, quality: float) -> float:
    """Students see each model's sandbox quality as it is."""
    return quality


@dataclass
class Classroom:
    """Students asking through the gateway and rating the answers, until stopped."""

    session: aiohttp.ClientSession
    base_url: str
    track: str
    qualities: dict[str, float]
    students: Sequence[Student]
    rate: float
    seed: int
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every request (the client key)."""
    max_in_flight: int = 200
    perceived: Perceived = as_served
    """How students see a model's quality (a scenario may make one segment unhappy)."""
    refresh: Callable[[], Awaitable[dict[str, float]]] | None = None
    """Reads the sandbox's model list again, for a model that appeared since (a fine-tune)."""
    counts: Counter[str] = field(default_factory=Counter)
    """``asked``, ``answered``, ``failed``, ``rated``, ``regenerated``, ``repeated``,
    ``skipped`` (arrivals dropped at ``max_in_flight``) and ``variant:<v>``."""
    served: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Answers by ``(subject, language, model)``: who got which model."""
    _last: dict[str, str] = field(default_factory=dict)
    _refreshed: set[str] = field(default_factory=set)

    async def quality(self, student: Student, model: str) -> float:
        """What ``student`` thinks of ``model``'s answers (0..1)."""
        unknown = model not in self.qualities and model not in self._refreshed
        if unknown and self.refresh is not None:
            self._refreshed.add(model)
            self.qualities.update(await self.refresh())
        return self.perceived(
            student.subject, student.language, model, self.qualities.get(model, 0.5)
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Let questions arrive at ``rate`` per second until ``stop`` is set."""
        arrivals = random.Random(self.seed)
        tasks: set[asyncio.Task[None]] = set()
        visit = 0
        while not stop.is_set():
            gap = arrivals.expovariate(self.rate)
            try:
                await asyncio.wait_for(stop.wait(), gap)
            except TimeoutError:
                pass
            else:
                break
            student = arrivals.choice(self.students)
            visit += 1
            if len(tasks) >= self.max_in_flight:
                self.counts["skipped"] += 1
                continue
            task = asyncio.create_task(self.visit(student, random.Random(self.seed * 7919 + visit)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            # Let answers in flight finish (and be rated); cancel what is left after 10 s.
            pending = list(tasks)
            await asyncio.wait(pending, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def visit(self, student: Student, rng: random.Random) -> None:
        """One question, its rating, and maybe a regenerate tap or two."""
        previous = self._last.get(student.id)
        question = pick_question(student, rng, previous)
        self._last[student.id] = question
        if question == previous:
            self.counts["repeated"] += 1
        retry = False
        for _ in range(3):
            answer = await self.ask(student, question, retry, rng.random() < STREAM_PROBABILITY)
            rating = None
            if answer.ok and answer.request_id is not None and answer.model is not None:
                self.served[(student.subject, student.language, answer.model)] += 1
                quality = await self.quality(student, answer.model)
                rating = draw_rating(quality, student.leniency, rng)
                if rng.random() < RATE_PROBABILITY:
                    await self.rate_answer(feedback_body(answer.request_id, rating, rng))
            if not wants_regenerate(rating, rng):
                return
            retry = True
            self.counts["regenerated"] += 1

    async def ask(self, student: Student, question: str, retry: bool, stream: bool) -> Answer:
        """``POST /v1/chat/completions`` as Tara's app sends it."""
        headers = {
            **self.headers,
            "X-Tara-User": student.id,
            "X-Tara-Subject": student.subject,
            "X-Tara-Language": student.language,
            "X-Tara-Grade": student.grade,
        }
        if retry:
            headers["X-Tara-Retry"] = "1"
        body = {
            "model": self.track,
            "messages": [{"role": "user", "content": question}],
            "stream": stream,
        }
        self.counts["asked"] += 1
        try:
            async with self.session.post(
                f"{self.base_url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                data = await response.read()
                ok = response.status == 200 and answer_complete(data, stream)
                answer = Answer(
                    ok,
                    response.headers.get("X-Tara-Variant"),
                    response.headers.get("X-Tara-Model"),
                    response.headers.get("X-Tara-Request-Id"),
                )
        except (aiohttp.ClientError, TimeoutError):
            answer = Answer(ok=False)
        self.counts["answered" if answer.ok else "failed"] += 1
        if answer.ok and answer.variant is not None:
            self.counts[f"variant:{answer.variant}"] += 1
        return answer

    async def rate_answer(self, body: dict[str, Any]) -> None:
        """``POST /v1/feedback``; a refused rating is counted, never raised."""
        try:
            url = f"{self.base_url}/v1/feedback"
            async with self.session.post(url, json=body, headers=self.headers) as response:
                await response.read()
                self.counts["rated" if response.status in (200, 202) else "rating_refused"] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.counts["rating_refused"] += 1
