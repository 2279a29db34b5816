"""Settings of the fine-tuning dataset build (``Settings.finetune``).

Every field has a default that follows the fine-tuning strategy; the CLI's
flags (``tara finetune prepare --min-rating ...``) override the extraction
ones for a single run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from tara.finetune.eval_config import EvaluationSettings
from tara.finetune.lora_config import LoraSettings

Script = Literal["devanagari", "tamil", "latin"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _subject_sentences() -> dict[str, str]:
    return {
        "math": "You explain mathematics step by step with examples from everyday Indian life.",
        "physics": "You explain physics concepts with simple experiments and real-world examples.",
        "chemistry": "You explain chemistry with safe, everyday examples and clear reactions.",
    }


def _language_sentences() -> dict[str, str]:
    return {
        "hi": "Respond in Hindi (Devanagari script), using simple words a school student "
        "understands.",
        "ta": "Respond in Tamil (Tamil script), using simple words a school student understands.",
        "en": "Respond in clear, simple English.",
    }


def _openai_fine_tunable() -> list[str]:
    return [
        "gpt-4.1-2025-04-14",
        "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano-2025-04-14",
        "gpt-4o-2024-08-06",
        "gpt-4o-mini-2024-07-18",
    ]


class PromptSettings(_Section):
    """The system prompt: a base sentence, then one for the subject and one for the language."""

    base: str = "You are Tara, a caring Indian female AI tutor."
    """First sentence of every system prompt."""
    subjects: dict[str, str] = Field(default_factory=_subject_sentences)
    """Subject sentence per subject (math, physics, chemistry; add more here)."""
    languages: dict[str, str] = Field(default_factory=_language_sentences)
    """Language sentence per language code (hi, ta, en; add more here)."""
    generic_subject: str = "You explain each idea step by step with simple, everyday examples."
    """Subject sentence for a subject not listed above."""
    generic_language: str = "Respond in the student's language, using simple words."
    """Language sentence for a language not listed above."""


def _scripts() -> dict[str, Script]:
    return {"hi": "devanagari", "ta": "tamil", "en": "latin"}


class ValidationSettings(_Section):
    """Thresholds and choices of the validation rules (see ``tara.finetune.validate``)."""

    scripts: dict[str, Script] = Field(default_factory=_scripts)
    """Script each language's answers must be written in; other languages are not checked."""
    min_script_ratio: float = Field(0.6, ge=0, le=1)
    """Share of the answer's letters that must be in the language's script.

    Digits, symbols and punctuation are not letters, so formulas cost little;
    the remaining slack tolerates a few English terms and variable names.
    """
    romanised_hindi: Literal["accept", "reject"] = "reject"
    """Whether a Hindi answer written in Latin letters ("yeh force hai") is kept."""
    cultural_lexicon: Path | None = None
    """Lexicon file replacing the shipped default (``finetune/data/cultural_lexicon.txt``)."""
    cultural_terms: list[str] = Field(default_factory=list)
    """Extra terms, in the lexicon file's syntax, added to the lexicon."""
    cultural_tag: str = "cultural"
    """Feedback tag by which students flag culturally inappropriate answers."""
    privacy: Literal["redact", "drop"] = "redact"
    """Replace personal data by a placeholder, or drop the example."""
    min_answer_chars: int = Field(20, ge=1)
    """Shorter answers (after trimming) are treated as truncated."""
    truncation_min_words: int = Field(6, ge=1)
    """A last line this long that ends in a letter is taken to be cut mid-sentence."""
    max_answer_tokens: int = Field(2048, gt=0)
    """Answers longer than this (tokens) are dropped from the dataset."""
    refusal_scan_chars: int = Field(240, gt=0)
    """Refusal phrases are looked for in this many leading characters of the answer."""
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)
    """Word-bigram Jaccard similarity (question and answer, case-folded) at which an example
    is a near duplicate of a better-rated one and dropped; confirmed exactly for every
    candidate the LSH keys propose."""
    near_duplicate_bands: int = Field(8, ge=1, le=64)
    """LSH bands: the bigram hash range is cut into this many parts, each giving one key."""
    near_duplicate_rows: int = Field(8, ge=1)
    """Smallest bigram hashes per band that make its key (texts agreeing on them are
    candidates)."""
    near_duplicate_min_shingles: int = Field(12, ge=1)
    """Shorter texts are checked for exact duplicates only."""
    dedup_memory_mb: int = Field(32, ge=1, le=4096)
    """Unused, kept so that existing configuration files still load: duplicates are now
    found by sorting their keys at the end of a build (no Bloom filter)."""


class SplitSettings(_Section):
    """Fractions of the train/validation/test split and what to do with tiny combinations."""

    train: float = Field(0.8, ge=0, le=1)
    """Share of each language×subject combination in the training split."""
    validation: float = Field(0.1, ge=0, le=1)
    """Share in the validation split."""
    test: float = Field(0.1, ge=0, le=1)
    """Share in the held-out test split (used by ``evaluate``)."""
    seed: int = Field(0, ge=0, lt=2**63)
    """Seed of the split; the same seed puts each example in the same split."""
    small_combinations: Literal["drop", "train"] = "drop"
    """A combination leaving some non-empty split empty is dropped, or kept whole in train;
    either way the report lists it."""

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSettings:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            msg = f"split fractions must add up to 1 (got {total:g})"
            raise ValueError(msg)
        return self


class FinetuneSettings(_Section):
    """How the fine-tuning dataset is extracted, validated, split and written, and trained on."""

    min_rating: int = Field(4, ge=1, le=5)
    """Lowest rating of an interaction used for training."""
    min_interactions: int = Field(100, ge=1)
    """Language×subject combinations with fewer rated interactions are left out."""
    output_dir: Path = Path("tara-data/finetune")
    """Where ``tara finetune prepare`` writes datasets."""
    prompts: PromptSettings = PromptSettings()
    validation: ValidationSettings = ValidationSettings()
    split: SplitSettings = SplitSettings()

    # The TRAIN phase (``tara finetune start | status | cancel``).
    backend: str = "openai"
    """Training backend: a registered name (``openai``, ``lora``) or ``package.module:factory``."""
    base_model: str = "gpt-4.1-mini-2025-04-14"
    """Model the fine-tuning job starts from: a dated model the backend can fine-tune (checked
    before anything is uploaded), or a fine-tune of one (``ft:<base>:...``)."""
    fine_tunable_models: list[str] = Field(default_factory=_openai_fine_tunable)
    """Base models the OpenAI backend accepts (OpenAI's dated models open to supervised
    fine-tuning, none with a published shutdown); list your provider's when ``base_url``
    points elsewhere; empty: not checked."""
    n_epochs: int = Field(3, ge=1)
    """Training epochs."""
    batch_size: int = Field(16, ge=1)
    """Training batch size."""
    learning_rate_multiplier: float = Field(0.1, gt=0)
    """Learning-rate multiplier of the job."""
    suffix: str | None = Field("tara", max_length=64)
    """Added to the fine-tuned model's name (``ft:<base>:<suffix>:<id>``)."""
    base_url: str | None = None
    """Fine-tuning API (any provider serving OpenAI's); None: ``upstream.base_url``."""
    api_key: SecretStr | None = None
    """Key for ``base_url``; None: ``upstream.api_key``."""
    state_dir: Path | None = None
    """Where ``runs.json`` (the local run registry) lives; None: next to each dataset."""
    poll_interval: float = Field(10.0, gt=0)
    """Seconds between two looks at a job that ``status --follow`` is watching."""
    request_timeout: float = Field(60.0, gt=0)
    """Seconds per fine-tuning API call."""
    retry_attempts: int = Field(6, ge=1)
    """Tries per API call on transient errors (connection, 408, 409, 429, 5xx)."""
    retry_initial_backoff: float = Field(0.5, ge=0)
    """First wait before retrying an API call (doubling, jittered)."""
    retry_max_backoff: float = Field(20.0, ge=0)
    """Longest wait between two tries of an API call."""
    job_scan_limit: int = Field(1000, ge=1)
    """Jobs looked through (newest first) when searching the backend for a run's job."""
    workers: int = Field(1, ge=0, le=16)
    """Processes running the stateless rules of a large build; 0 keeps them in-process."""
    evaluation: EvaluationSettings = EvaluationSettings()
    lora: LoraSettings = LoraSettings()
