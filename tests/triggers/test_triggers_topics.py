"""Topic derivation from the question (lexicon) and the bounded cell table, as tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tara.triggers.cells import CellTable
from tara.triggers.topics import (
    MAX_QUESTION_CHARS,
    OTHER,
    LexiconError,
    TopicLexicon,
    load_lexicon,
    parse_lexicon,
    question_text,
    words,
)

LEXICON = load_lexicon()


@pytest.mark.parametrize(
    ("subject", "question", "topic"),
    [
        ("math", "How do I solve a quadratic equation?", "algebra"),
        ("math", "द्विघात समीकरण x² + 5x + 6 = 0 को कैसे हल करें?", "algebra"),
        ("math", "இருபடிச் சமன்பாட்டைத் தீர்ப்பது எப்படி?", "algebra"),  # inflected: prefixes
        ("math", "भिन्न 3/4 को 2/5 में कैसे जोड़ें?", "arithmetic"),
        ("math", "முக்கோணவியல் விகிதங்கள் என்ன?", "trigonometry"),  # not triangle (முக்கோண*)
        ("math", "What is the area of a circle of radius 3?", "mensuration"),  # tie: first listed
        ("math", "Find the standard deviation of 2, 4, 6", "statistics"),  # a phrase
        ("Math", "What is a TRIANGLE?", "geometry"),  # case-insensitive
        ("physics", "நியூட்டனின் மூன்றாம் விதி என்ன? விசை", "mechanics"),
        ("physics", "प्रकाश का अपवर्तन क्या है?", "optics"),
        ("physics", "What is the kinetic energy of a 2 kg ball?", "energy"),
        ("physics", "गतिज ऊर्जा क्या है?", "energy"),  # गतिज*, longer than गति*
        ("chemistry", "Why does an acid with pH 3 react with chalk?", "acids_bases"),
        ("chemistry", "அமிலங்கள் மற்றும் காரங்கள்", "acids_bases"),
        ("math", "hello there", None),
        ("biology", "what is a cell", None),  # no topics for the subject
        (None, "quadratic equation", None),  # no subject: no lexicon to pick from
    ],
)
def test_derive_topic(subject: str | None, question: str, topic: str | None) -> None:
    assert LEXICON.derive(subject, question) == topic


def test_devanagari_and_tamil_words_keep_their_vowel_signs() -> None:
    assert words("त्रिभुज के कोण।") == ["त्रिभुज", "के", "कोण"]  # the danda ends a word
    assert words("சமன்பாடு, விசை") == ["சமன்பாடு", "விசை"]
    assert words("x\u200dy Fractions") == ["xy", "fractions"]  # joiners dropped, case folded


def test_only_the_start_of_a_long_question_is_read() -> None:
    padding = "word " * (MAX_QUESTION_CHARS // 5)
    assert LEXICON.derive("math", padding + "quadratic equation") is None
    assert LEXICON.derive("math", "quadratic " + padding) == "algebra"


@pytest.mark.parametrize(
    ("messages", "text"),
    [
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "b"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], "q"),
        ([{"role": "user", "content": [{"type": "text", "text": "p"}, {"x": 1}]}], "p"),
        ([{"role": "user", "content": None}], ""),
        ([{"role": "system", "content": "s"}, "junk"], ""),
        (None, ""),
    ],
)
def test_question_text(messages: Any, text: str) -> None:
    assert question_text(messages) == text


def test_a_lexicon_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "topics.txt"
    path.write_text(
        "[biology/cells]  # a new subject\ncell*\nमाइटोकॉन्ड्रिया\n\n[biology/genes]\ndna\n"
    )
    lexicon = load_lexicon(path)
    assert lexicon.subjects == ["biology"]
    assert lexicon.topics("biology") == ["cells", "genes"]
    assert lexicon.derive("biology", "What do cells and DNA do?") == "cells"  # tie: first
    assert lexicon.derive("math", "quadratic") is None
    with pytest.raises(LexiconError, match="cannot read"):
        load_lexicon(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cell\n", "before the first"),
        ("[biology]\ncell\n", "section is"),
        ("[biology/two words]\ncell\n", "section is"),
        ("[biology/cells\ncell\n", "section is"),
        ("[biology/cells]\n*\n", "holds no word"),
    ],
)
def test_a_bad_lexicon_names_its_line(text: str, message: str) -> None:
    with pytest.raises(LexiconError, match=message):
        parse_lexicon(text.splitlines(), "x.txt")


def test_an_entry_without_a_word_is_skipped_when_built_directly() -> None:
    assert TopicLexicon({"math": {"algebra": ["...", "x"]}}).derive("math", "x") == "algebra"


def _fill(table: CellTable, names: list[str]) -> dict[str, int]:
    for name in names:
        table.cell(name).requests += 1
    return {name: stats.requests for name, stats in table.cells().items()}


@pytest.mark.parametrize(
    ("capacity", "names", "cells"),
    [
        (3, ["a", "b", "a"], {"a": 2, "b": 1}),
        (2, ["a", "b", "c"], {"b": 1, "c": 1, OTHER: 1}),  # a (least, first by name) folded
        (2, ["a", "a", "b", "c"], {"a": 2, "c": 1, OTHER: 1}),  # b counted least
        (2, [OTHER, "a"], {"a": 1, OTHER: 1}),  # "other" is the bucket, never a cell
        (1, [], {}),
    ],
)
def test_cell_table_keeps_at_most_capacity_names(
    capacity: int, names: list[str], cells: dict[str, int]
) -> None:
    assert _fill(CellTable(capacity), names) == cells


def test_a_frequent_topic_keeps_its_cell_through_a_flood_of_one_off_names() -> None:
    # 1,000 requests of unique junk topics, with "algebra" as every 4th request
    # (25% > 1/20): it must end with a cell; the junk ends in "other".
    table = CellTable(20)
    names = ["algebra" if i % 4 == 0 else f"junk-{i}" for i in range(1000)]
    cells = _fill(table, names)
    assert "algebra" in cells
    assert len(cells) == 21
    assert sum(cells.values()) == 1000  # nothing lost: what left a cell is in "other"
    assert table.other.evictions > 700


def test_the_word_memory_stays_bounded_and_derivation_right() -> None:
    lexicon = load_lexicon()
    for start in range(0, 50_250, 250):  # 50,250 distinct words, 250 per question
        lexicon.derive("math", " ".join(f"w{n}" for n in range(start, start + 250)))
    assert len(lexicon._subjects["math"].seen) <= 50_000
    assert lexicon.derive("math", "quadratic w1") == "algebra"
