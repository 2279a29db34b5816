"""The streaming pipeline end to end: filtering, reporting, files, manifest and report."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_finetune_samples import ANSWERS, MATH, QUESTIONS, REFUSALS, corpus, interaction, stream

from tara.finetune.config import FinetuneSettings, PromptSettings, SplitSettings
from tara.finetune.extract import NO_TEXT, Candidate, ExtractFilter, extract
from tara.finetune.prepare import prepare
from tara.finetune.prompts import system_prompt
from tara.finetune.stats import (
    BELOW_MIN_INTERACTIONS,
    INCLUDED,
    TOO_SMALL_DROPPED,
    TOO_SMALL_IN_TRAIN,
)

SETTINGS = FinetuneSettings(min_interactions=30)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _combos(manifest: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    combos = manifest["combinations"]
    assert isinstance(combos, list)
    return {(c["language"], c["subject"]): c for c in combos}


async def test_min_interactions_leaves_out_small_combinations_and_reports_them(
    tmp_path: Path,
) -> None:
    items = corpus({("hi", "physics"): 60, ("ta", "math"): 45, ("en", "chemistry"): 29})
    result = await prepare(stream(items), SETTINGS, tmp_path)
    combos = _combos(result.manifest)
    assert combos[("hi", "physics")]["status"] == INCLUDED
    assert combos[("ta", "math")]["status"] == INCLUDED
    assert combos[("en", "chemistry")]["status"] == BELOW_MIN_INTERACTIONS
    assert combos[("en", "chemistry")]["extracted"] == 29
    written = sum(f.examples for f in result.files.values())
    assert written == 105
    for split in ("train", "validation", "test"):
        for example in _lines(tmp_path / f"{split}.jsonl"):
            assert "Tamil" in example["messages"][0]["content"] or "Hindi" in str(example)
    report = result.report_path.read_text("utf-8")
    assert "en×chemistry: below min interactions (29 extracted" in report


async def test_jsonl_lines_are_chat_examples_with_the_strategy_prompt(tmp_path: Path) -> None:
    items = corpus({("hi", "physics"): 40, ("ta", "math"): 40, ("en", "chemistry"): 40})
    await prepare(stream(items), SETTINGS, tmp_path)
    questions = {ix.request_id: ix for ix in items}
    assert questions  # the corpus is not empty
    seen = 0
    for split in ("train", "validation", "test"):
        for example in _lines(tmp_path / f"{split}.jsonl"):
            messages = example["messages"]
            assert isinstance(messages, list)
            assert [m["role"] for m in messages] == ["system", "user", "assistant"]
            assert set(example) == {"messages"}
            assert all(isinstance(m["content"], str) and m["content"] for m in messages)
            seen += 1
    assert seen == 120
    train = _lines(tmp_path / "train.jsonl")
    prompts = {ex["messages"][0]["content"] for ex in train}  # type: ignore[index]
    assert prompts == {
        "You are Tara, a caring Indian female AI tutor. You explain physics concepts with simple "
        "experiments and real-world examples. Respond in Hindi (Devanagari script), using simple "
        "words a school student understands.",
        "You are Tara, a caring Indian female AI tutor. You explain mathematics step by step with "
        "examples from everyday Indian life. Respond in Tamil (Tamil script), using simple words "
        "a school student understands.",
        "You are Tara, a caring Indian female AI tutor. You explain chemistry with safe, everyday "
        "examples and clear reactions. Respond in clear, simple English.",
    }


def test_unknown_subjects_and_languages_get_generic_sentences() -> None:
    prompts = PromptSettings(subjects={"biology": "You explain living things."})
    assert system_prompt("biology", "hi", prompts).split(". ")[1] == "You explain living things"
    generic = system_prompt(None, "bn", prompts)
    assert generic == (
        "You are Tara, a caring Indian female AI tutor. "
        f"{prompts.generic_subject} {prompts.generic_language}"
    )


async def test_manifest_hashes_match_the_files_and_runs_are_reproducible(tmp_path: Path) -> None:
    items = corpus({("hi", "math"): 50, ("ta", "physics"): 50})
    first = await prepare(stream(items), SETTINGS, tmp_path / "a")
    second = await prepare(stream(items), SETTINGS, tmp_path / "b")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text("utf-8"))
    for name, info in manifest["files"].items():
        data = (tmp_path / "a" / name).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["bytes"] == len(data)
        assert info["examples"] == data.count(b"\n")
    assert manifest["seed"] == 0
    assert manifest["settings"]["split"]["train"] == 0.8
    assert {n: f.sha256 for n, f in first.files.items()} == {
        n: f.sha256 for n, f in second.files.items()
    }
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "manifest.json",
        "report.md",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]


async def test_every_rule_is_counted_per_combination(tmp_path: Path) -> None:
    items = corpus({("hi", "physics"): 40})
    items += [
        interaction("bad-1", answer=REFUSALS["hi"]),
        interaction("bad-2", answer=ANSWERS["en"]),
        interaction("bad-3", tags=["cultural", "wrong"]),
        interaction("bad-4", answer=""),
        interaction("bad-5", answer=ANSWERS["hi"]),
        interaction("bad-6", answer=ANSWERS["hi"]),
        interaction("bad-7", answer=ANSWERS["hi"].replace("2 kg", "5 kg")),
        interaction("phone", answer=MATH["hi"] + " मेरा नंबर 9876543210 है।"),
        interaction("low", rating=3),
        interaction("unrated", rating=None),
        interaction("error", status=502),
        interaction("metadata-only", messages=[]),
    ]
    result = await prepare(stream(items), SETTINGS, tmp_path)
    m = result.manifest
    assert m["extraction"] == {
        "outside_filter": 0,
        "not_ok_status": 1,
        "below_min_rating": 2,
        "no_text": 1,
    }
    rules = m["rules"]
    assert isinstance(rules, dict)
    assert {k: v for k, v in rules.items() if v} == {
        "refusal": 1,
        "language": 1,
        "cultural_tag": 1,
        "empty": 1,
        "duplicate": 1,
        "near_duplicate": 1,
    }
    assert m["redactions"] == {"phone": 1}
    assert m["redacted_examples"] == 1
    combo = _combos(m)[("hi", "physics")]
    assert combo["extracted"] == 48
    assert sum(combo["kept"].values()) == 42  # type: ignore[union-attr]
    everything = "".join(
        (tmp_path / f"{s}.jsonl").read_text("utf-8") for s in ("train", "validation", "test")
    )
    assert "[PHONE]" in everything
    assert "9876543210" not in everything


@pytest.mark.parametrize(
    ("policy", "status"), [("drop", TOO_SMALL_DROPPED), ("train", TOO_SMALL_IN_TRAIN)]
)
async def test_combinations_too_small_to_split_are_reported(
    tmp_path: Path, policy: str, status: str
) -> None:
    # Four examples cannot fill train, validation and test at 80/10/10 for most ids;
    # min_interactions=1 lets the combination through extraction.
    settings = FinetuneSettings(
        min_interactions=1,
        split=SplitSettings(small_combinations=policy),  # type: ignore[arg-type]
    )
    items = corpus({("ta", "chemistry"): 4, ("hi", "math"): 300})
    result = await prepare(stream(items), settings, tmp_path)
    small = _combos(result.manifest)[("ta", "chemistry")]
    assert small["status"] == status
    big = _combos(result.manifest)[("hi", "math")]
    assert big["status"] == INCLUDED
    train_text = (tmp_path / "train.jsonl").read_text("utf-8")
    tamil_in_train = sum("Tamil" in line for line in train_text.splitlines())
    assert tamil_in_train == (4 if policy == "train" else 0)
    assert "ta×chemistry: too small to split" in result.report_path.read_text("utf-8")


async def test_extraction_filter_applies_time_track_segment_and_rating(tmp_path: Path) -> None:
    items = [
        interaction("in", answer=ANSWERS["hi"], created_at=100.0),
        interaction("early", answer=ANSWERS["hi"] + " ", created_at=99.0),
        interaction("late", answer=ANSWERS["hi"] + "  ", created_at=200.0),
        interaction("other-track", track="t2", created_at=150.0),
        interaction("other-segment", segment="grade-10", created_at=150.0),
        interaction("four", rating=4, created_at=150.0),
    ]
    where = ExtractFilter(min_rating=5, since=100.0, until=200.0, track="tara-tutor")
    where = ExtractFilter(
        min_rating=where.min_rating,
        since=where.since,
        until=where.until,
        track=where.track,
        segment="default",
    )
    settings = FinetuneSettings(
        min_interactions=1, split=SplitSettings(train=1, validation=0, test=0)
    )
    result = await prepare(stream(items), settings, tmp_path, where)
    assert result.manifest["extraction"]["outside_filter"] == 4  # type: ignore[index]
    assert result.manifest["extraction"]["below_min_rating"] == 1  # type: ignore[index]
    assert result.files["train"].examples == 1
    assert result.manifest["filter"]["since"] == 100.0  # type: ignore[index]


async def test_no_scratch_files_are_left_behind(tmp_path: Path) -> None:
    result = await prepare(stream(corpus({("en", "math"): 40})), SETTINGS, tmp_path)
    names = sorted(p.name for p in result.manifest_path.parent.iterdir())
    assert names == ["manifest.json", "report.md", "test.jsonl", "train.jsonl", "validation.jsonl"]


def test_the_question_is_the_text_of_the_last_user_message() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "पहला सवाल"},
        {"role": "assistant", "content": "पहला जवाब"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "दूसरा"},
                {"type": "image_url", "image_url": {"url": "data:,"}},
                {"type": "text", "text": "सवाल"},
            ],
        },
    ]
    candidate = extract(interaction("r", messages=messages), ExtractFilter())
    assert isinstance(candidate, Candidate)
    assert candidate.question == "दूसरा\nसवाल"
    for no_question in (
        [{"role": "system", "content": "only a system prompt"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
        [{"role": "user", "content": 5}],
    ):
        assert extract(interaction("r", messages=no_question), ExtractFilter()) == NO_TEXT
    assert extract(interaction("r", language=None, subject=None), ExtractFilter()) == Candidate(
        request_id="r",
        language="unknown",
        subject="unknown",
        question=QUESTIONS["en"],
        answer=ANSWERS["en"],
        answer_tokens=None,
        tags=(),
        rating=5,
        student="h",
    )
