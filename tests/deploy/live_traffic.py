"""Simulated students for the live-Prometheus check: chat requests and feedback over real HTTP.

A :class:`Classroom` of students (every subject × language) asks questions
through the gateway replicas, streamed or not, sometimes tapping "regenerate"
(the same question again with ``X-Tara-Retry: 1``), and rates a share of the
answers, tags included, through ``POST /v1/feedback`` on a replica picked at
random (feedback may reach any replica, as behind a load balancer). Everything
is seeded; :class:`Tally` counts what happened so a test can check that the
traffic covered what the dashboard shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

SUBJECTS = ("math", "physics", "chemistry")
LANGUAGES = ("hi", "ta", "en")
QUESTIONS = {
    "math": ("What is 7 x 8?", "How do I add fractions?", "What is a prime number?"),
    "physics": ("What is inertia?", "Why does ice float?", "What is a newton?"),
    "chemistry": ("What is an atom?", "Why does iron rust?", "What is a mole?"),
}
TAGS = ("cultural", "irrelevant", "wrong", "language")
MEAN_RATING = {"stable": 4.0, "canary": 3.0}
"""The canary in this scenario is the weaker model; its students rate it lower."""


@dataclass(frozen=True, slots=True)
class Student:
    """One simulated student and the context the app sends with each question."""

    student_id: str
    subject: str
    language: str
    grade: str


@dataclass(slots=True)
class Tally:
    """What the simulated students saw, for the test's sanity checks."""

    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(variant, HTTP status) of every chat answer."""
    streamed: int = 0
    retries: int = 0
    feedback: Counter[int] = field(default_factory=Counter)
    """HTTP status of every feedback submission."""


def classroom(size: int, rng: random.Random) -> list[Student]:
    """``size`` students covering every subject × language pair (``size`` ≥ 9)."""
    pairs = [(s, lang) for s in SUBJECTS for lang in LANGUAGES]
    pairs += [rng.choice(pairs) for _ in range(size - len(pairs))]
    return [
        Student(f"student-{i:03d}", subject, language, str(rng.randint(6, 12)))
        for i, (subject, language) in enumerate(pairs)
    ]


@dataclass
class Classroom:
    """Students driving traffic at ``gateways`` (base URLs) until :meth:`run`'s event is set."""

    gateways: Sequence[str]
    client_key: str
    track: str
    students: Sequence[Student]
    seed: int = 0
    pause: tuple[float, float] = (0.2, 0.6)
    """Seconds a student waits between questions (uniform): bounds the load on 2 cores."""
    rating_share: float = 0.7
    retry_share: float = 0.2
    stream_share: float = 0.5
    tally: Tally = field(default_factory=Tally)

    async def run(self, stop: asyncio.Event) -> None:
        """Let every student ask, regenerate and rate until ``stop`` is set."""
        headers = {"Authorization": f"Bearer {self.client_key}"}
        limits = httpx.Limits(max_connections=4 * len(self.students))
        async with (
            httpx.AsyncClient(headers=headers, timeout=20, limits=limits) as client,
            asyncio.TaskGroup() as group,
        ):
            for n, student in enumerate(self.students):
                rng = random.Random(f"{self.seed}-{n}")
                group.create_task(self._student(client, student, rng, stop))

    async def _student(
        self, client: httpx.AsyncClient, student: Student, rng: random.Random, stop: asyncio.Event
    ) -> None:
        question = rng.choice(QUESTIONS[student.subject])
        while not stop.is_set():
            retry = rng.random() < self.retry_share
            if not retry:
                question = rng.choice(QUESTIONS[student.subject])
            answer = await self._ask(client, student, question, retry=retry, rng=rng)
            if answer is not None and rng.random() < self.rating_share:
                await self._rate(client, *answer, rng=rng)
            # A student reads before asking again; stop promptly when told to.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=rng.uniform(*self.pause))

    async def _ask(
        self,
        client: httpx.AsyncClient,
        student: Student,
        question: str,
        *,
        retry: bool,
        rng: random.Random,
    ) -> tuple[str, str] | None:
        """Ask one question; the (request id, variant) of a successful answer."""
        stream = rng.random() < self.stream_share
        headers = {
            "X-Tara-User": student.student_id,
            "X-Tara-Subject": student.subject,
            "X-Tara-Language": student.language,
            "X-Tara-Grade": student.grade,
        }
        if retry:
            headers["X-Tara-Retry"] = "1"
            self.tally.retries += 1
        body = {
            "model": self.track,
            "messages": [{"role": "user", "content": question}],
            "stream": stream,
        }
        url = f"{rng.choice(self.gateways)}/v1/chat/completions"
        async with client.stream("POST", url, json=body, headers=headers) as response:
            async for _ in response.aiter_bytes():
                pass  # read the whole answer, as the app would
        variant = response.headers.get("x-tara-variant", "none")
        self.tally.answers[variant, response.status_code] += 1
        self.tally.streamed += stream
        request_id = response.headers.get("x-tara-request-id")
        if response.status_code != 200 or request_id is None:
            return None
        return request_id, variant

    async def _rate(
        self, client: httpx.AsyncClient, request_id: str, variant: str, *, rng: random.Random
    ) -> None:
        """Rate an answer 1-5 around its variant's mean, sometimes with tags."""
        rating = min(5, max(1, round(rng.gauss(MEAN_RATING.get(variant, 3.5), 0.8))))
        tags = [tag for tag in TAGS if rng.random() < 0.15]
        body = {"request_id": request_id, "rating": rating, "tags": tags}
        url = f"{rng.choice(self.gateways)}/v1/feedback"
        response = await client.post(url, json=body)
        self.tally.feedback[response.status_code] += 1
