"""Picking the answer's language and subject, and composing it from the phrase banks."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tara.sandbox.answers import answer_tokens, compose, pick_language, pick_subject
from tara.sandbox.phrases import BANKS, SUBJECTS


def _msgs(system: str | None, user: str) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": user}]


@pytest.mark.parametrize(
    ("system", "user", "language"),
    [
        ("You are Tara. Respond in Hindi (Devanagari script).", "What is force?", "hi"),
        ("You are Tara. Respond in Tamil (Tamil script).", "What is force?", "ta"),
        ("You are Tara. Respond in clear, simple English.", "बल क्या है?", "en"),
        (None, "Please answer in Tamil: what is an acid?", "ta"),
        (None, "कृपया हिंदी में बताओ", "hi"),
        (None, "தமிழில் சொல்லுங்கள்", "ta"),
        (None, "बल क्या होता है?", "hi"),
        (None, "விசை என்றால் என்ன?", "ta"),
        (None, "What is force?", "en"),
        ("You are Tara.", "", "en"),
    ],
)
def test_pick_language(system: str | None, user: str, language: str) -> None:
    assert pick_language(_msgs(system, user)) == language


def test_forced_language_wins() -> None:
    assert pick_language(_msgs("Respond in Hindi.", "hi"), forced="ta") == "ta"


def test_language_comes_from_the_last_user_message() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "बल क्या है?"},
        {"role": "assistant", "content": "..."},
        {"role": "user", "content": [{"type": "text", "text": "விசை என்ன?"}]},
    ]
    assert pick_language(messages) == "ta"


@pytest.mark.parametrize(
    ("system", "user", "metadata", "subject"),
    [
        ("You explain mathematics step by step.", "help", None, "math"),
        (None, "What is gravity?", None, "physics"),
        (None, "अम्ल क्या है?", None, "chemistry"),
        (None, "கணிதம் கடினம்", None, "math"),
        (None, "How do I study?", None, "general"),
        (None, "What is gravity?", {"subject": "chemistry"}, "chemistry"),
        (None, "What is gravity?", {"subject": "history"}, "physics"),
    ],
)
def test_pick_subject(system: str | None, user: str, metadata: Any, subject: str) -> None:
    assert pick_subject(_msgs(system, user), metadata) == subject


@pytest.mark.parametrize("language", ["en", "hi", "ta"])
@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("count", [1, 2, 3, 5, 9])
def test_compose_uses_the_language_bank(language: str, subject: str, count: int) -> None:
    bank = BANKS[language]
    every = {
        *bank.openers,
        *bank.closers,
        *(s for group in bank.explanations.values() for s in group),
        *(s for group in bank.examples.values() for s in group),
    }
    sentences = compose(random.Random(count), language, subject, count)
    assert len(sentences) == count
    assert set(sentences) <= every
    if count >= 2:
        assert sentences[0] in bank.openers
        assert sentences[-1] in bank.closers
    if count >= 4:
        assert sentences[-2] in bank.examples[subject]


def test_answer_tokens_join_sentences_with_spaces() -> None:
    sentences = ["बल एक धक्का है।", "Gravity pulls.", "ஒளி பயணிக்கிறது."]
    assert "".join(answer_tokens(sentences)) == " ".join(sentences)
    assert "".join(answer_tokens(sentences)) == " ".join(sentences)  # memoised path
