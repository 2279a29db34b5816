"""Simulated students: population, ratings drawn from quality, regenerate taps, questions."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from tara.demo.questions import GRADES, LANGUAGES, QUESTIONS, SUBJECTS
from tara.demo.students import (
    Classroom,
    Student,
    answer_complete,
    draw_rating,
    feedback_body,
    pick_question,
    population,
    wants_regenerate,
)
from tara.rollout.config import RolloutSettings
from tara.sandbox.config import default_models


def test_every_subject_and_language_has_questions_in_its_script() -> None:
    scripts = {"hi": ("\u0900", "\u097f"), "ta": ("\u0b80", "\u0bff")}
    for subject in SUBJECTS:
        for language in LANGUAGES:
            questions = QUESTIONS[(subject, language)]
            assert len(questions) >= 3
            if language in scripts:
                low, high = scripts[language]
                assert all(any(low <= ch <= high for ch in q) for q in questions)


def test_population_is_reproducible_and_covers_every_subject_language_and_grade() -> None:
    students = population(random.Random(3), 600)
    assert students == population(random.Random(3), 600)
    assert {s.subject for s in students} == set(SUBJECTS)
    assert {s.language for s in students} == set(LANGUAGES)
    assert {s.grade for s in students} == set(GRADES)
    languages = Counter(s.language for s in students)
    assert languages["hi"] > languages["en"] > languages["ta"]
    assert len({s.id for s in students}) == 600


@pytest.mark.parametrize(
    ("quality", "leniency", "low", "high"),
    [
        (0.4, 0.0, 2.45, 2.75),
        (0.75, 0.0, 3.85, 4.1),
        (0.88, 0.0, 4.25, 4.55),
        (0.75, 0.3, 4.05, 4.35),
    ],
)
def test_ratings_follow_quality(quality: float, leniency: float, low: float, high: float) -> None:
    rng = random.Random(1)
    ratings = [draw_rating(quality, leniency, rng) for _ in range(4000)]
    assert set(ratings) <= {1, 2, 3, 4, 5}
    assert low <= statistics.fmean(ratings) <= high


def test_the_bad_candidates_ratings_drop_past_the_rollback_limit_and_the_good_ones_rise() -> None:
    models, rng = default_models(), random.Random(2)
    limit = RolloutSettings().rating_drop_limit

    def mean(name: str) -> float:
        return statistics.fmean(draw_rating(models[name].quality, 0, rng) for _ in range(3000))

    stable = mean("tara-stable")
    assert stable - mean("tara-candidate-bad") > 3 * limit
    assert mean("tara-candidate-good") - stable > limit


@pytest.mark.parametrize(
    ("rating", "draw", "regenerate"),
    [(None, 0.1, True), (None, 0.95, False), (1, 0.1, True), (2, 0.4, True), (2, 0.6, False),
     (3, 0.0, False), (5, 0.0, False)],
)  # fmt: skip
def test_wants_regenerate(rating: int | None, draw: float, regenerate: bool) -> None:
    class Fixed(random.Random):
        def random(self) -> float:
            return draw

    assert wants_regenerate(rating, Fixed()) is regenerate


def test_poor_ratings_often_carry_a_tag_and_good_ones_never() -> None:
    rng = random.Random(5)
    poor = [feedback_body("r1", 1, rng) for _ in range(200)]
    good = [feedback_body("r2", 5, rng) for _ in range(200)]
    assert 100 < sum("tags" in b for b in poor) < 200
    assert not any("tags" in b for b in good)
    assert all(b["request_id"] == "r1" and b["rating"] == 1 for b in poor)


def test_students_sometimes_repeat_their_question_and_otherwise_ask_a_new_one() -> None:
    student = Student("s", "physics", "ta", "9", 0.0)
    rng = random.Random(9)
    previous = QUESTIONS[("physics", "ta")][0]
    asked = [pick_question(student, rng, previous) for _ in range(1000)]
    repeats = sum(q == previous for q in asked)
    assert 40 < repeats < 130  # REPEAT_PROBABILITY = 8%
    assert set(asked) == set(QUESTIONS[("physics", "ta")])
    assert pick_question(student, rng, None) in QUESTIONS[("physics", "ta")]


@pytest.mark.parametrize(
    ("body", "streamed", "complete"),
    [
        (b'data: {"choices": []}\n\ndata: [DONE]\n\n', True, True),
        (b'data: {"choices": []}\n\n', True, False),  # cut off
        (b'data: {"error": {"message": "x"}}\n\ndata: [DONE]\n\n', True, False),
        (b'{"choices": [{"message": {"content": "hi"}}]}', False, True),
        (b'{"choices": []}', False, False),
        (b"not json", False, False),
    ],
)
def test_complete_answers(body: bytes, streamed: bool, complete: bool) -> None:
    assert answer_complete(body, streamed) is complete


def test_a_population_can_be_put_in_given_segments_in_given_shares() -> None:
    mix = ((("math", "hi"), 0.85), (("physics", "en"), 0.15))
    students = population(random.Random(3), 2000, mix, prefix="loop-student")
    segments = Counter((s.subject, s.language) for s in students)
    assert set(segments) == {("math", "hi"), ("physics", "en")}
    assert 0.8 < segments[("math", "hi")] / 2000 < 0.9
    assert students[0].id == "loop-student-0000"


async def test_students_see_a_new_model_once_the_sandbox_lists_it() -> None:
    listed = {"tara-stable": 0.75, "ft:x:1": 0.95}
    asked: list[int] = []

    async def refresh() -> dict[str, float]:
        asked.append(1)
        return listed

    room = Classroom(
        None,  # type: ignore[arg-type]  # no request is sent here
        "http://unused",
        "tara-tutor",
        {"tara-stable": 0.75},
        [],
        1.0,
        0,
        perceived=lambda subject, language, model, q: 0.45 if subject == "math" else q,
        refresh=refresh,
    )
    hindi_math = Student("s", "math", "hi", "8", 0.0)
    english_physics = Student("t", "physics", "en", "8", 0.0)
    assert await room.quality(english_physics, "ft:x:1") == 0.95
    assert await room.quality(english_physics, "ft:x:1") == 0.95
    assert await room.quality(english_physics, "nowhere") == 0.5
    assert await room.quality(hindi_math, "tara-stable") == 0.45
    assert len(asked) == 2  # once per model it did not know
