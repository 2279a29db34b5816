"""``tara-judge``: grades follow the answering model's quality, through the real SDK."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tara.sandbox import running_sandbox
from tara.sandbox.judge import grade, overlap

KEY = "sk-test"


def test_grade_follows_quality_and_falls_back_to_overlap() -> None:
    memo: dict[bytes, float] = {}
    case = {"question": "q", "reference": "a b c d", "answer": "a b c d"}
    unknown = grade(case, memo)
    assert unknown["accuracy"] == 5  # word overlap 1.0 with the reference
    assert "overlap" in unknown["rationale"]
    assert overlap("x y", "a b") == 0.0
    assert grade({"answer": "", "reference": "a"}, memo)["accuracy"] == 1


async def _ask(client: openai.AsyncOpenAI, model: str, i: int) -> str:
    reply = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Explain force, please ({i})."}]
    )
    return reply.choices[0].message.content or ""


async def _judge(client: openai.AsyncOpenAI, answer: str) -> dict[str, int]:
    case = {"question": "Explain force.", "reference": "Force is a push or pull.", "answer": answer}
    reply = await client.chat.completions.create(
        model="tara-judge",
        messages=[
            {"role": "system", "content": "Grade it."},
            {"role": "user", "content": json.dumps(case)},
        ],
    )
    grades: dict[str, int] = json.loads(reply.choices[0].message.content or "")
    return grades


async def test_a_better_model_gets_better_grades() -> None:
    async def graded(client: openai.AsyncOpenAI, model: str, i: int) -> dict[str, int]:
        return await _judge(client, await _ask(client, model, i))

    totals = {}
    async with (
        running_sandbox(seed=2) as url,
        openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=6) as client,
    ):
        for model in ("tara-candidate-good", "tara-stable", "tara-candidate-bad"):
            grades = await asyncio.gather(*(graded(client, model, i) for i in range(20)))
            assert all(1 <= g["accuracy"] <= 5 and 1 <= g["cultural"] <= 5 for g in grades)
            totals[model] = sum(g["accuracy"] for g in grades) / len(grades)
    assert totals["tara-candidate-good"] > totals["tara-stable"] > totals["tara-candidate-bad"]
    assert totals["tara-stable"] == pytest.approx(4.0, abs=0.3)  # about 1 + 4 × 0.75


async def test_the_judge_refuses_what_it_cannot_grade() -> None:
    async with (
        running_sandbox() as url,
        openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0) as client,
    ):
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(
                model="tara-judge", messages=[{"role": "user", "content": "not json"}]
            )
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(
                model="tara-judge",
                messages=[{"role": "user", "content": '{"answer": "x"}'}],
                stream=True,
            )
