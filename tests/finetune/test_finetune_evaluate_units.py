"""The evaluation's pure parts: lexical scores, satisfaction, judge replies, gate, token bucket."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_finetune_samples import ANSWERS

from tara.finetune.config import FinetuneSettings, PromptSettings, ValidationSettings
from tara.finetune.eval_config import GateSettings
from tara.finetune.evaluate import Answer, Example, score_answer
from tara.finetune.gate import decide
from tara.finetune.judge import RUBRIC, Judgement, judge_messages, parse_judgement
from tara.finetune.rate_limit import TokenBucket
from tara.finetune.rules_cultural import parse_lexicon
from tara.finetune.scoring import (
    ModelMetrics,
    expected_language,
    language_ok,
    percentile,
    predicted_satisfaction,
    token_f1,
)

SCRIPTS = ValidationSettings().scripts


def test_token_f1_compares_words_not_case_or_punctuation() -> None:
    assert token_f1("Force = mass × acceleration.", "force = MASS × acceleration") == 1.0
    assert token_f1("बल द्रव्यमान है।", "बल त्वरण है") == pytest.approx(2 / 3)
    assert token_f1("", "anything") == 0.0
    assert token_f1("apples", "oranges") == 0.0


def test_percentile_interpolates() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)


def test_predicted_satisfaction_is_monotone_and_bounded() -> None:
    assert predicted_satisfaction(1.0, 1.0, 1.0, 0.2) == 5.0
    assert predicted_satisfaction(0.0, 0.0, 0.0, 0.2) == 1.0
    assert predicted_satisfaction(0.8, 1.0, 1.0, 0.2) > predicted_satisfaction(0.6, 1.0, 1.0, 0.2)
    assert predicted_satisfaction(0.8, 1.0, 1.0, 0.2) > predicted_satisfaction(0.8, 0.5, 1.0, 0.2)
    # Slowness costs up to one point, from 3 s on.
    assert predicted_satisfaction(0.8, 1.0, 1.0, 3.0) == predicted_satisfaction(0.8, 1.0, 1.0, 0.1)
    slow = predicted_satisfaction(0.8, 1.0, 1.0, 60.0)
    assert slow == pytest.approx(predicted_satisfaction(0.8, 1.0, 1.0, 0.1) - 1.0)


def test_expected_language_comes_from_the_system_prompt_or_the_reference() -> None:
    prompts = PromptSettings()
    system = f"{prompts.base} {prompts.languages['ta']}"
    assert expected_language(system, ANSWERS["hi"], prompts, SCRIPTS) == "ta"
    assert expected_language("Be kind.", ANSWERS["hi"], prompts, SCRIPTS) == "hi"
    assert expected_language("Be kind.", "12 + 3 = 15", prompts, SCRIPTS) is None


def test_language_ok_uses_the_dataset_rule() -> None:
    settings = ValidationSettings()
    assert language_ok(ANSWERS["ta"], "ta", settings)
    assert not language_ok(ANSWERS["en"], "ta", settings)
    assert language_ok("anything", None, settings)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"accuracy": 5, "cultural": 3, "rationale": "ok"}', Judgement(1.0, 0.5, "ok")),
        ('Sure! {"accuracy": 1, "cultural": 5} hope it helps', Judgement(0.0, 1.0, "")),
        ('{"accuracy": 6, "cultural": 3}', None),
        ('{"accuracy": true, "cultural": 3}', None),
        ('{"accuracy": 4}', None),
        ("[1, 2]", None),
        ("{not json}", None),
        ("no verdict", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_judgement(reply: str | None, expected: Judgement | None) -> None:
    assert parse_judgement(reply) == expected


def test_judge_messages_carry_the_rubric_and_never_the_model() -> None:
    system, user = judge_messages("q?", "ref", "ans")
    assert system == {"role": "system", "content": RUBRIC}
    assert user["content"] == '{"question":"q?","reference":"ref","answer":"ans"}'


def test_score_answer_lexicon_hit_zeroes_cultural() -> None:
    settings = FinetuneSettings()
    lexicon = parse_lexicon(["vodka"])
    example = Example("sys", "q", "Mix salt in water.", "en")
    clean = score_answer(example, Answer("Mix salt in water.", 10, 5), None, lexicon, settings)
    assert (clean.accuracy, clean.cultural, clean.language) == (1.0, 1.0, 1.0)
    dirty = score_answer(example, Answer("Mix salt in vodka.", 10, 5), None, lexicon, settings)
    assert dirty.cultural == 0.0
    assert dirty.lexicon_hit == "vodka"
    judged = score_answer(
        example, Answer("Mix salt.", 10, 5), Judgement(0.75, 1.0), lexicon, settings
    )
    assert (judged.accuracy, judged.judged) == (0.75, True)
    failed = score_answer(
        example, Answer(None, 10, 0, "APIConnectionError"), None, lexicon, settings
    )
    assert (failed.ok, failed.satisfaction, failed.accuracy) == (False, 1.0, 0.0)


STABLE = ModelMetrics(
    model="stable",
    samples=50,
    answered=50,
    error_rate=0.0,
    accuracy=0.75,
    cultural=0.9,
    language=1.0,
    latency_p50_ms=200.0,
    latency_p95_ms=400.0,
    tokens_per_answer=80.0,
    satisfaction=4.0,
    lexicon_hits=0,
    judged=50,
)


@pytest.mark.parametrize(
    ("change", "outcome", "failed"),
    [
        ({}, "pass", set()),
        ({"accuracy": 0.735}, "pass", set()),  # within the 0.02 margin
        ({"accuracy": 0.72}, "fail", {"accuracy"}),
        ({"cultural": 0.89}, "fail", {"cultural"}),
        ({"lexicon_hits": 1}, "fail", {"lexicon_hits"}),
        ({"language": 0.85}, "fail", {"language"}),
        ({"latency_p95_ms": 650.0}, "pass", set()),  # 1.5 × 400 + 50
        ({"latency_p95_ms": 651.0}, "fail", {"latency_p95_ms"}),
        ({"satisfaction": 3.99}, "fail", {"satisfaction"}),
        ({"error_rate": 0.03}, "fail", {"error_rate"}),
        ({"answered": 9}, "inconclusive", set()),
    ],
)
def test_gate(change: dict[str, float], outcome: str, failed: set[str]) -> None:
    candidate = replace(STABLE, model="candidate", **change)  # type: ignore[arg-type]
    result = decide(candidate, STABLE, GateSettings())
    assert result.outcome == outcome
    assert {c.name for c in result.checks if not c.passed} == failed
    assert result.passed == (outcome == "pass")


def test_token_bucket_spends_the_burst_then_spaces_requests() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=2, clock=lambda: now[0])
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)  # queued behind the previous reservation
    now[0] = 1.0  # ten tokens' worth later, but the bucket holds at most two
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
