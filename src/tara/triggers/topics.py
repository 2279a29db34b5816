"""What a question is about, when the app does not say: a keyword lexicon per subject.

The app may name a request's topic (``X-Tara-Topic`` / ``metadata.topic``);
otherwise the trigger reader derives one from the last user message with
:meth:`TopicLexicon.derive`, a deterministic count of lexicon words (English, Hindi
and Tamil) per topic of the request's subject. No model, no network: a few
dictionary lookups per word, run by the reader over the interaction log, never
on the request path. The shipped lexicon is ``data/topics.txt`` (its header
describes the syntax); ``triggers.topic_lexicon`` replaces it.

A question without a subject the lexicon knows, or matching no word, has no
derived topic; the reader counts it under :data:`OTHER`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

OTHER = "other"
"""The topic of questions with no known topic, and of topics past the per-segment bound."""

MAX_QUESTION_CHARS = 2000
"""Only this much of a question is read: topic words come early, and the cost stays flat."""

TOPIC_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
"""What a lexicon topic name may be (the set a client's ``X-Tara-Topic`` may use, minus space)."""

# Letters and digits, plus the Devanagari and Tamil blocks whole: their vowel
# signs and viramas are combining marks, which ``\w`` alone would split words at.
# The danda (U+0964, U+0965) is punctuation and ends a word.
_WORD = re.compile(r"[\w\u0900-\u0963\u0966-\u097F\u0B80-\u0BFF]+")
_ZWNJ, _ZWJ = "\u200c", "\u200d"
_WORD_CACHE = 50_000
"""Words remembered per subject (their topic or none); questions reuse most of their words."""


class LexiconError(ValueError):
    """A topic lexicon file cannot be read or parsed."""


def words(text: str) -> list[str]:
    """``text`` as lower-case NFC words, joiners removed (how questions and entries compare)."""
    if _ZWNJ in text or _ZWJ in text:
        text = text.replace(_ZWNJ, "").replace(_ZWJ, "")
    return _WORD.findall(unicodedata.normalize("NFC", text).casefold())


@dataclass(slots=True)
class _Subject:
    exact: dict[str, str] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)
    phrases: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    """First word → (the phrase's words, topic), longest phrase first."""
    order: dict[str, int] = field(default_factory=dict)
    """Topic → its position in the file (ties go to the earlier one)."""
    lengths: list[int] = field(default_factory=list)
    """Lengths of the prefixes, longest first."""
    seen: dict[str, str | None] = field(default_factory=dict)
    """Word → the topic it matched (or ``None``), so each distinct word is looked up once."""


class TopicLexicon:
    """Compiled lexicon: per subject, whole words, prefixes and phrases, each naming a topic."""

    def __init__(self, entries: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        """``entries``: subject → topic → entries (``word``, ``word*`` or ``two words``)."""
        self._subjects: dict[str, _Subject] = {}
        for subject, topics in entries.items():
            compiled = self._subjects.setdefault(subject.casefold(), _Subject())
            for topic, terms in topics.items():
                compiled.order.setdefault(topic, len(compiled.order))
                for term in terms:
                    _add(compiled, topic, term)
        for compiled in self._subjects.values():
            for phrases in compiled.phrases.values():
                phrases.sort(key=lambda p: -len(p[0]))
            compiled.lengths = sorted({len(p) for p in compiled.prefixes}, reverse=True)

    @property
    def subjects(self) -> list[str]:
        """The subjects with topics."""
        return sorted(self._subjects)

    def topics(self, subject: str) -> list[str]:
        """A subject's topics in lexicon order."""
        compiled = self._subjects.get(subject.casefold())
        return list(compiled.order) if compiled else []

    def derive(self, subject: str | None, question: str) -> str | None:
        """The topic of ``question`` among ``subject``'s, or ``None`` when no word matches."""
        compiled = self._subjects.get(subject.casefold()) if subject else None
        if compiled is None:
            return None
        found = words(question[:MAX_QUESTION_CHARS])
        hits: dict[str, int] = {}
        i = 0
        while i < len(found):
            word, step = found[i], 1
            topic = None
            for phrase, phrase_topic in compiled.phrases.get(word, ()):
                if tuple(found[i : i + len(phrase)]) == phrase:
                    topic, step = phrase_topic, len(phrase)
                    break
            if topic is None:
                topic = _match(compiled, word)
            if topic is not None:
                hits[topic] = hits.get(topic, 0) + 1
            i += step
        if not hits:
            return None
        return min(hits, key=lambda t: (-hits[t], compiled.order[t]))


def _match(compiled: _Subject, word: str) -> str | None:
    """The topic of the longest entry ``word`` matches: itself, else its longest prefix."""
    seen = compiled.seen
    if word in seen:
        return seen[word]
    topic = compiled.exact.get(word)
    if topic is None:
        for n in compiled.lengths:
            if n <= len(word):
                topic = compiled.prefixes.get(word[:n])
                if topic is not None:
                    break
    if len(seen) >= _WORD_CACHE:
        seen.clear()  # bounded: a long check over varied text starts afresh
    seen[word] = topic
    return topic


def _add(compiled: _Subject, topic: str, term: str) -> None:
    prefix = term.endswith("*")
    parts = words(term.removesuffix("*"))
    if not parts:
        return
    if len(parts) > 1:
        compiled.phrases.setdefault(parts[0], []).append((tuple(parts), topic))
    elif prefix:
        compiled.prefixes.setdefault(parts[0], topic)
    else:
        compiled.exact.setdefault(parts[0], topic)


def parse_lexicon(lines: Iterable[str], origin: str) -> dict[str, dict[str, list[str]]]:
    """Subject → topic → entries from lexicon lines; :class:`LexiconError` names a bad line."""
    out: dict[str, dict[str, list[str]]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            subject, _, topic = line.strip("[]").strip().partition("/")
            if not line.endswith("]") or not subject or not TOPIC_NAME.fullmatch(topic):
                msg = f"{origin}:{number}: a section is [subject/topic], topic made of {_NAMES}"
                raise LexiconError(msg)
            current = out.setdefault(subject.strip().casefold(), {}).setdefault(topic, [])
            continue
        if current is None:
            msg = f"{origin}:{number}: entry before the first [subject/topic] section"
            raise LexiconError(msg)
        if not words(line.removesuffix("*")):
            msg = f"{origin}:{number}: {line!r} holds no word"
            raise LexiconError(msg)
        current.append(line)
    return out


_NAMES = "1 to 64 ASCII letters, digits, '_', '.', '-'"


def load_lexicon(path: Path | None = None) -> TopicLexicon:
    """The lexicon in ``path``, or the shipped ``data/topics.txt`` when ``None``."""
    if path is None:
        text = resources.files("tara.triggers").joinpath("data/topics.txt").read_text("utf-8")
        origin = "default topic lexicon"
    else:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            msg = f"cannot read topic lexicon {path}: {exc.strerror}"
            raise LexiconError(msg) from exc
        origin = str(path)
    return TopicLexicon(parse_lexicon(text.splitlines(), origin))


def question_text(messages: Sequence[Any] | None) -> str:
    """The text of the last user message (text parts joined), or ``""``."""
    for message in reversed(messages or ()):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        return ""
    return ""
