"""What the sandbox answers: the language, the subject and the sentences.

Language, in order: the model's forced language; an instruction in a
system/developer message or the last user message ("Respond in Hindi",
"हिंदी में", "தமிழில்"); the script of the last user message (Devanagari →
``hi``, Tamil → ``ta``); else English. Subject: ``metadata.subject`` if it
names a known one, else keywords in the system/developer messages, then in the last user
message, else ``general``. All pure functions of the request and a seeded RNG.
"""

from __future__ import annotations

import functools
import random
import re
from typing import Any

from tara.sandbox.phrases import BANKS, SUBJECTS
from tara.sandbox.tokens import tokenize

_INSTRUCTION = re.compile(
    # "Respond in Hindi", "answer only in clear, simple English" ...
    r"\b(?:respond|reply|answer|write|speak|explain)\s+(?:only\s+)?in\s+"
    r"(?:[a-z]+,?\s+){0,3}?(hindi|tamil|english)\b",
    re.IGNORECASE,
)
_NATIVE_INSTRUCTION = (("हिंदी में", "hi"), ("हिन्दी में", "hi"), ("தமிழில்", "ta"))
_DEVANAGARI = re.compile("[\u0900-\u097f]")
_TAMIL = re.compile("[\u0b80-\u0bff]")
_LANGUAGE_NAMES = {"hindi": "hi", "tamil": "ta", "english": "en"}

_SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "math": (
        "math",
        "algebra",
        "geometry",
        "fraction",
        "equation",
        "multiply",
        "गणित",
        "भिन्न",
        "கணிதம்",
        "பின்னம்",
    ),
    "physics": ("physics", "force", "velocity", "gravity", "भौतिक", "बल", "இயற்பியல்", "விசை"),
    "chemistry": (
        "chemistry",
        "chemical",
        "acid",
        "atom",
        "रसायन",
        "अम्ल",
        "வேதியியல்",
        "அமிலம்",
    ),
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _instructions(messages: list[dict[str, Any]]) -> str:
    return " ".join(
        _text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )


@functools.lru_cache(maxsize=1024)
def _instructed_language(text: str) -> str | None:
    # Cached: system prompts come from a small table and repeat on every request.
    found = _INSTRUCTION.search(text)
    if found:
        return _LANGUAGE_NAMES[found.group(1).lower()]
    for phrase, language in _NATIVE_INSTRUCTION:
        if phrase in text:
            return language
    return None


@functools.lru_cache(maxsize=1024)
def _named_subject(text: str) -> str | None:
    lowered = text.lower()
    for subject, words in _SUBJECT_WORDS.items():
        if any(word in lowered for word in words):
            return subject
    return None


def script_language(text: str) -> str:
    """``hi`` if Devanagari letters outnumber Tamil ones, ``ta`` for the reverse, else ``en``."""
    devanagari = len(_DEVANAGARI.findall(text))
    tamil = len(_TAMIL.findall(text))
    if devanagari == tamil == 0:
        return "en"
    return "hi" if devanagari >= tamil else "ta"


def pick_language(messages: list[dict[str, Any]], forced: str | None = None) -> str:
    """The answer's language (see the module docstring for the order)."""
    if forced is not None:
        return forced
    last_user = _last_user_text(messages)
    return (
        _instructed_language(_instructions(messages))
        or _instructed_language(last_user)
        or script_language(last_user)
    )


def pick_subject(messages: list[dict[str, Any]], metadata: Any = None) -> str:
    """The subject the answer is about (see the module docstring)."""
    if isinstance(metadata, dict) and metadata.get("subject") in SUBJECTS:
        return str(metadata["subject"])
    return (
        _named_subject(_instructions(messages))
        or _named_subject(_last_user_text(messages))
        or "general"
    )


def compose(rng: random.Random, language: str, subject: str, sentences: int) -> list[str]:
    """``sentences`` tutoring sentences: opener, explanation, maybe an example, closer."""
    bank = BANKS[language]
    if sentences == 1:
        return [rng.choice(bank.explanations[subject])]
    body_count = sentences - 2
    pool = list(bank.explanations[subject])
    body = rng.sample(pool, min(body_count, len(pool)))
    while len(body) < body_count:
        body.append(rng.choice(bank.explanations["general"]))
    if body_count >= 2:
        # An example makes the answer feel like Tara; it replaces the last explanation.
        body[-1] = rng.choice(bank.examples[subject])
    return [rng.choice(bank.openers), *body, rng.choice(bank.closers)]


_PIECES: dict[tuple[str, bool], tuple[str, ...]] = {}


def answer_tokens(sentences: list[str]) -> list[str]:
    """The tokens of the sentences joined by spaces (memoised per sentence)."""
    tokens: list[str] = []
    for i, sentence in enumerate(sentences):
        key = (sentence, i > 0)
        pieces = _PIECES.get(key)
        if pieces is None:
            # Phrase-bank sentences are finite, so this cache stays small.
            pieces = tuple(tokenize(f" {sentence}" if i > 0 else sentence))
            if len(_PIECES) < 10_000:
                _PIECES[key] = pieces
        tokens.extend(pieces)
    return tokens
