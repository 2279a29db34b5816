"""Tara's system prompts for training examples, built from the strategy's table.

A prompt is the base sentence, a subject sentence and a language sentence;
subjects or languages missing from the table get a generic sentence so new
ones never break a build.
"""

from __future__ import annotations

from tara.finetune.config import PromptSettings


def system_prompt(subject: str | None, language: str | None, settings: PromptSettings) -> str:
    """The system prompt for one subject and language."""
    subject_sentence = settings.subjects.get(subject or "", settings.generic_subject)
    language_sentence = settings.languages.get(language or "", settings.generic_language)
    return f"{settings.base} {subject_sentence} {language_sentence}"


class PromptTable:
    """Memoised :func:`system_prompt`: a build asks for a handful of prompts a million times."""

    def __init__(self, settings: PromptSettings) -> None:
        self._settings = settings
        self._cache: dict[tuple[str | None, str | None], str] = {}

    def get(self, subject: str | None, language: str | None) -> str:
        """The system prompt for this subject and language."""
        key = (subject, language)
        prompt = self._cache.get(key)
        if prompt is None:
            prompt = self._cache[key] = system_prompt(subject, language, self._settings)
        return prompt
