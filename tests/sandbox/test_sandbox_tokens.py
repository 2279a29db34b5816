"""The sandbox tokenizer: words and punctuation, script-aware, lossless."""

from __future__ import annotations

from typing import Any

import pytest

from tara.sandbox.tokens import count_tokens, prompt_tokens, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("What is 7×8?", ["What", " is", " 7", "×", "8", "?"]),
        ("बल क्या है?", ["बल", " क्या", " है", "?"]),
        ("सवाल है। ठीक", ["सवाल", " है", "।", " ठीक"]),
        ("விசை என்றால் என்ன?", ["விசை", " என்றால்", " என்ன", "?"]),
        ("", []),
        ("  leading", ["  leading"]),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    "text",
    ["Force is a push.", "शाबाश, तुमने सही सोचा।", "நன்றாக யோசித்தாய். H2O!", "a  b\n\tc"],
)
def test_tokens_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text
    assert count_tokens(text) == len(tokenize(text))


def test_prompt_tokens_counts_every_message_and_text_part() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "Hi there"}, {"type": "image"}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "Why?"},
    ]
    assert prompt_tokens(messages) == 3 + 2 + 2
