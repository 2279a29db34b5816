"""Language, cultural, privacy and quality rules on real Hindi, Tamil and English text."""

from __future__ import annotations

from pathlib import Path

import pytest
from stdnum import verhoeff
from test_finetune_samples import ANSWERS, MATH, REFUSALS, ROMANISED_HINDI

from tara.finetune.config import ValidationSettings
from tara.finetune.rules_cultural import LexiconError, load_lexicon, parse_lexicon
from tara.finetune.rules_language import (
    LANGUAGE,
    check_language,
    count_letters,
)
from tara.finetune.rules_language import (
    ROMANISED_HINDI as ROMANISED_RULE,
)
from tara.finetune.rules_privacy import scrub
from tara.finetune.rules_quality import (
    EMPTY,
    REFUSAL,
    TOO_LONG,
    TRUNCATED,
    check_quality,
    estimate_tokens,
)

S = ValidationSettings()


# --- language -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["hi", "ta", "en"])
def test_answers_in_the_requested_script_pass(lang: str) -> None:
    assert check_language(ANSWERS[lang], lang, S) is None
    assert check_language(MATH[lang], lang, S) is None


@pytest.mark.parametrize(
    ("answer_lang", "requested"),
    [("en", "hi"), ("ta", "hi"), ("hi", "ta"), ("en", "ta"), ("hi", "en"), ("ta", "en")],
)
def test_answers_in_another_script_fail(answer_lang: str, requested: str) -> None:
    assert check_language(ANSWERS[answer_lang], requested, S) == LANGUAGE


def test_formulas_numbers_and_a_few_english_terms_are_tolerated() -> None:
    hindi = (
        "Photosynthesis में पौधे sunlight की मदद से अपना भोजन बनाते हैं। इस प्रक्रिया में "
        "कार्बन डाइऑक्साइड और पानी से ग्लूकोज़ और ऑक्सीजन बनती है: 6CO₂ + 6H₂O → C₆H₁₂O₆ + 6O₂."
    )
    tamil = "வேகம் v = d / t. இங்கு d = 100 m, t = 20 s என்றால் v = 5 m/s ஆகும்."
    assert check_language(hindi, "hi", S) is None
    assert check_language(tamil, "ta", S) is None


def test_mostly_english_with_some_hindi_fails_for_hindi() -> None:
    mixed = "Force is mass times acceleration, यानी बल. Push the cycle and it moves faster."
    assert check_language(mixed, "hi", S) == LANGUAGE


def test_letters_are_counted_by_script() -> None:
    counts = count_letters("बल = F", "devanagari")
    assert (counts.target, counts.latin, counts.letters) == (2, 1, 3)
    assert count_letters("123 + 456 = 579", "latin").letters == 0


def test_no_letters_at_all_fails_and_unknown_languages_are_not_checked() -> None:
    assert check_language("42 = 6 × 7", "hi", S) == LANGUAGE
    assert check_language(ANSWERS["ta"], "bn", S) is None


def test_romanised_hindi_is_rejected_or_accepted_by_setting() -> None:
    assert check_language(ROMANISED_HINDI, "hi", S) == ROMANISED_RULE
    accept = ValidationSettings(romanised_hindi="accept")
    assert check_language(ROMANISED_HINDI, "hi", accept) is None
    # English is not romanised Hindi, whatever the setting.
    assert check_language(ANSWERS["en"], "hi", accept) == LANGUAGE


def test_script_ratio_threshold_is_a_setting() -> None:
    half = "बल और त्वरण force and mass"
    assert check_language(half, "hi", ValidationSettings(min_script_ratio=0.9)) == LANGUAGE
    assert check_language(half, "hi", ValidationSettings(min_script_ratio=0.3)) is None


# --- cultural -------------------------------------------------------------------------

LEXICON = load_lexicon(None)


@pytest.mark.parametrize(
    "text",
    [
        "पिताजी शराब की दो बोतलें लाए, तो कुल कितनी बोतलें हुईं?",
        "रवि ने जुआ खेलकर 50 रुपये जीते।",
        "சாராயத்தை காய்ச்சும்போது ஆவியாதல் நடக்கிறது.",
        "மாட்டிறைச்சி சமைக்க எவ்வளவு நேரம் ஆகும்?",
        "If a shop sells 3 Beers for 150 rupees, what does one cost?",
        "He was called a low-caste boy by the others.",
        "वह उन्हें का\u092b\u093cिर कहता था।",  # फ़ as फ + nukta sign
        "वह उन्हें का\u095eिर कहता था।",  # फ़ as one precomposed letter
    ],
)
def test_lexicon_terms_are_found(text: str) -> None:
    assert LEXICON.find(text.casefold()) is not None


@pytest.mark.parametrize(
    "text",
    [
        ANSWERS["hi"],
        ANSWERS["ta"],
        MATH["en"],
        "एथेनॉल एक अल्कोहल है जो किण्वन से बनता है।",
        "Ethanol is an alcohol; fermentation of sugar produces it.",
        "Beefy is not a word in our lexicon, and neither is bettings-like text.",
        "Abetting a mistake is still a mistake.",
        "மது என்ற பெயருடைய மாணவி கணக்கு கேட்டாள்.",
    ],
)
def test_clean_texts_and_curriculum_words_pass(text: str) -> None:
    assert LEXICON.find(text.casefold()) is None


def test_extra_terms_and_patterns_extend_the_lexicon(tmp_path: Path) -> None:
    lexicon = load_lexicon(None, ["पटाखे", r"re:\bfire\s*crackers?\b"])
    assert lexicon.find("दिवाली पर पटाखे मत जलाओ।") == "पटाखे"
    assert lexicon.find("we burst firecrackers at diwali") == "firecrackers"
    custom = tmp_path / "lexicon.txt"
    custom.write_text("# only this\nசூது*\n", encoding="utf-8")
    only = load_lexicon(custom)
    assert only.find("அது சூதுவாது.") == "சூது"
    assert only.find("शराब") is None


def test_bad_lexicon_entries_are_reported_with_their_line(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match=r"lexicon:2: invalid pattern"):
        parse_lexicon(["ok", "re:(unclosed"])
    with pytest.raises(LexiconError, match="empty prefix"):
        parse_lexicon(["*"])
    with pytest.raises(LexiconError, match="cannot read"):
        load_lexicon(tmp_path / "missing.txt")


# --- privacy --------------------------------------------------------------------------


def _aadhaar(base11: str) -> str:
    return base11 + verhoeff.calc_check_digit(base11)


def test_verhoeff_checksum() -> None:
    number = _aadhaar("23456789012")
    assert verhoeff.is_valid(number)
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not verhoeff.is_valid(wrong)


@pytest.mark.parametrize(
    ("text", "kind", "placeholder_text"),
    [
        ("मेरा नंबर +91 98765 43210 है, कॉल करना।", "phone", "मेरा नंबर [PHONE] है, कॉल करना।"),
        ("என் எண் 9876543210 ஆகும்.", "phone", "என் எண் [PHONE] ஆகும்."),
        ("Call 098765-43210 after school.", "phone", "Call [PHONE] after school."),
        (
            "होमवर्क ravi.kumar@example.co.in पर भेजो।",
            "email",
            "होमवर्क [EMAIL] पर भेजो।",
        ),
        ("என் PAN எண் ABCPE1234F ஆகும்.", "pan", "என் PAN எண் [PAN] ஆகும்."),
    ],
)
def test_personal_data_is_replaced(text: str, kind: str, placeholder_text: str) -> None:
    assert scrub(text) == (placeholder_text, (kind,))


def test_aadhaar_needs_a_valid_check_digit() -> None:
    valid = _aadhaar("23456789012")
    grouped = f"{valid[:4]} {valid[4:8]} {valid[8:]}"
    assert scrub(f"मेरा आधार {grouped} है।") == ("मेरा आधार [AADHAAR] है।", ("aadhaar",))
    invalid = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    text = f"गुणनफल {invalid} है।"
    assert scrub(text) == (text, ())


def test_textbook_pans_and_palindromes_are_not_identity_numbers() -> None:
    # The fourth letter of a PAN is its holder type; D is none, so ABCDE1234F is an example.
    assert scrub("PAN का ढाँचा ABCDE1234F जैसा होता है।") == ("PAN का ढाँचा ABCDE1234F जैसा होता है।", ())
    assert scrub("My PAN is ABCPE1234F.") == ("My PAN is [PAN].", ("pan",))
    assert scrub("Digits 0000: ABCPE0000F.") == ("Digits 0000: ABCPE0000F.", ())
    assert scrub("ABCTE1234F and AAAKA1234A") == ("[PAN] and [PAN]", ("pan", "pan"))
    palindrome = "234567765432"  # Verhoeff-valid or not, no Aadhaar is a palindrome
    assert scrub(f"x = {palindrome}") == (f"x = {palindrome}", ())


@pytest.mark.parametrize(
    "text",
    [
        ANSWERS["hi"],
        MATH["ta"],
        "भारत की जनसंख्या लगभग 1,40,00,00,000 है।",
        "1234567890 is not a mobile number: they start with 6 to 9.",
        "2024 में 365 दिन नहीं, 366 दिन थे।",
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert scrub(text) == (text, ())


# --- quality --------------------------------------------------------------------------


def _quality(
    answer: str, tokens: int | None = None, settings: ValidationSettings = S
) -> str | None:
    return check_quality(answer, answer.casefold(), tokens, settings)


@pytest.mark.parametrize("lang", ["hi", "ta", "en"])
def test_complete_answers_pass_quality(lang: str) -> None:
    assert _quality(ANSWERS[lang]) is None
    assert _quality(MATH[lang]) is None


def test_empty_and_very_short_answers() -> None:
    assert _quality("   \n ") == EMPTY
    assert _quality("हाँ।") == TRUNCATED
    assert _quality("ஆம்.") == TRUNCATED


@pytest.mark.parametrize(
    "answer",
    [
        "न्यूटन का दूसरा नियम कहता है कि किसी वस्तु पर लगने वाला बल उसके द्रव्यमान और",
        "நியூட்டனின் இரண்டாம் விதி, ஒரு பொருளின் மீது செயல்படும் விசை அதன் நிறை மற்றும்",
        "Newton's second law says that the force on an object equals its mass and",
        "पहले दोनों भिन्नों के हर बराबर करो, फिर अंश जोड़ो,",
        "Here is the code:\n```python\nprint(1 + 2)\n",
    ],
)
def test_answers_cut_mid_sentence_are_truncated(answer: str) -> None:
    assert _quality(answer) == TRUNCATED


def test_short_last_lines_without_a_full_stop_are_fine() -> None:
    assert _quality("दोनों ओर से 3 घटाओ:\n2x = 4\nइसलिए x = 2") is None
    assert _quality("சரியான விடை: x = 2 😊") is None


@pytest.mark.parametrize("lang", ["hi", "ta", "en"])
def test_refusals_are_found(lang: str) -> None:
    assert _quality(REFUSALS[lang]) == REFUSAL


def test_negations_that_are_not_refusals_pass() -> None:
    assert _quality("पानी को गर्म करने पर वह भाप बन जाता है, लेकिन उसका द्रव्यमान नहीं बदलता।") is None
    assert _quality("I can't stress this enough: always write the units with the numbers.") is None
    assert _quality("இந்தக் கணக்கை நீயே செய்ய முடியும், முயற்சி செய்!") is None


def test_answers_over_the_token_limit() -> None:
    small = ValidationSettings(max_answer_tokens=50)
    assert _quality(ANSWERS["en"], tokens=51, settings=small) == TOO_LONG
    assert _quality(ANSWERS["en"], tokens=50, settings=small) is None
    # Without a logged count the estimate is used: Devanagari is about a token a character.
    assert estimate_tokens(ANSWERS["hi"]) > 50
    assert _quality(ANSWERS["hi"], settings=small) == TOO_LONG
