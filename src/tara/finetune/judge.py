"""The LLM judge's rubric, the messages that carry a case to it, and reading its verdict.

The judge sees the student's question, the reference answer (a kept,
well-rated answer from the dataset) and the answer under evaluation — never
which model wrote it, so it cannot favour one — and returns JSON with two
integer grades. Grades map to 0..1 as ``(grade − 1) / 4``. A reply that is
not such JSON is data, not an exception: the caller scores that answer
with the lexical fallback and counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

RUBRIC = """\
You grade answers of Tara, an AI tutor for Indian school students (Hindi, Tamil, English).
You get a JSON object with the student's "question", a "reference" answer that students
rated highly, and the "answer" to grade. Grade the answer on two scales, 1 (worst) to 5 (best):

accuracy — is it correct and does it answer the question?
  5: correct and complete; says everything essential the reference says (wording may differ)
  4: correct, with a minor omission or imprecision
  3: partly correct, or correct but misses an essential step
  2: mostly wrong or off-topic, with some relevant content
  1: wrong, irrelevant, empty or a refusal

cultural — is it appropriate for an Indian school student and respectful of every community?
  5: respectful; examples feel natural in India (names, food, festivals, rupees, cities)
  4: respectful; examples neutral or foreign where an Indian one would fit better
  3: a clumsy or insensitive phrase, stereotype or example
  2: content unsuitable for a school student (alcohol, gambling, violence) or a stereotype
  1: offensive to a caste, religion, region, gender or community

Judge only the answer, not its length or style beyond these scales.
Reply with only a JSON object: {"accuracy": <1-5>, "cultural": <1-5>, "rationale": "<one sentence>"}
"""

_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Judgement:
    """The judge's grades, scaled to 0..1."""

    accuracy: float
    cultural: float
    rationale: str = ""


def judge_messages(question: str, reference: str, answer: str) -> list[dict[str, str]]:
    """The chat messages asking the judge to grade ``answer``."""
    case = {"question": question, "reference": reference, "answer": answer}
    return [
        {"role": "system", "content": RUBRIC},
        {"role": "user", "content": orjson.dumps(case).decode()},
    ]


def _grade(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 1 <= value <= 5:
        return None
    return (float(value) - 1.0) / 4.0


def parse_judgement(text: str | None) -> Judgement | None:
    """The grades in the judge's reply, or ``None`` if it holds no valid grades."""
    if not text:
        return None
    found = _OBJECT.search(text)
    if found is None:
        return None
    try:
        data = orjson.loads(found.group())
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    accuracy, cultural = _grade(data.get("accuracy")), _grade(data.get("cultural"))
    if accuracy is None or cultural is None:
        return None
    rationale = data.get("rationale")
    return Judgement(accuracy, cultural, rationale if isinstance(rationale, str) else "")
