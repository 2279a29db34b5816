"""The sandbox's tokenizer: one token per word or punctuation mark.

Not OpenAI's tokenizer, but simple, deterministic and script-aware, so usage
numbers can be checked against the text: a token is optional leading
whitespace followed by either a run of word characters (letters, digits,
Devanagari and Tamil signs included) or one other visible character. The
tokens of a text concatenate back to the text (minus trailing whitespace),
so a stream of one token per chunk reproduces the answer exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Python's \w misses Indic vowel signs and viramas (category M), which would split
# every Hindi or Tamil word apart; the danda (U+0964/5) stays punctuation.
_WORD = "[\\w\u0300-\u036f\u0900-\u0963\u0966-\u097f\u0b80-\u0bff\u200c\u200d]+"
_TOKEN = re.compile(f"\\s*(?:{_WORD}|\\S)")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens, each keeping the whitespace before it."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """Number of tokens in ``text``."""
    return len(_TOKEN.findall(text))


def _content_text(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens over every message's content (strings or lists of text parts)."""
    return sum(
        count_tokens(text) for message in messages for text in _content_text(message.get("content"))
    )
