"""Real Hindi, Tamil and English tutoring texts and interaction builders shared by the tests.

Imported by the other ``test_finetune_*`` modules (pytest puts this directory
on ``sys.path``); its own tests check that the samples are what they claim.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from typing import Any

from tara.finetune.config import ValidationSettings
from tara.finetune.rules_language import check_language
from tara.telemetry.interactions import Interaction

QUESTIONS = {
    "hi": "न्यूटन का दूसरा नियम क्या है?",
    "ta": "நியூட்டனின் இரண்டாம் விதி என்ன?",
    "en": "What is Newton's second law?",
}
ANSWERS = {
    "hi": (
        "न्यूटन का दूसरा नियम कहता है कि किसी वस्तु पर लगने वाला बल उसके द्रव्यमान और "
        "त्वरण के गुणनफल के बराबर होता है। सूत्र है F = m × a. उदाहरण के लिए, अगर 2 kg "
        "की एक गेंद को 3 m/s² का त्वरण मिले, तो उस पर 6 N का बल लगेगा। जब तुम साइकिल "
        "को ज़ोर से धक्का देते हो, तो वह तेज़ी से आगे बढ़ती है।"
    ),
    "ta": (
        "நியூட்டனின் இரண்டாம் விதி, ஒரு பொருளின் மீது செயல்படும் விசை அதன் நிறை மற்றும் "
        "முடுக்கத்தின் பெருக்கலுக்குச் சமம் என்று கூறுகிறது. சூத்திரம் F = m × a. "
        "உதாரணமாக, 2 kg பந்துக்கு 3 m/s² முடுக்கம் கிடைத்தால், அதன் மீது 6 N விசை "
        "செயல்படும். சைக்கிளை வேகமாகத் தள்ளினால் அது வேகமாக நகரும்."
    ),
    "en": (
        "Newton's second law says that the force on an object equals its mass times its "
        "acceleration. The formula is F = m × a. For example, if a 2 kg ball gets an "
        "acceleration of 3 m/s², a force of 6 N acts on it. When you push a bicycle "
        "harder, it speeds up faster."
    ),
}
MATH = {
    "hi": (
        "भिन्नों को जोड़ने के लिए पहले उनके हर बराबर करते हैं। जैसे 1/2 + 1/3 में हर 6 "
        "बनाते हैं: 3/6 + 2/6 = 5/6. मान लो तुम्हारे पास आधी रोटी है और दोस्त तुम्हें "
        "एक तिहाई रोटी और देता है, तो कुल 5/6 रोटी हो जाएगी।"
    ),
    "ta": (
        "பின்னங்களைக் கூட்ட முதலில் அவற்றின் பகுதிகளைச் சமமாக்க வேண்டும். உதாரணமாக "
        "1/2 + 1/3 இல் பகுதியை 6 ஆக்குகிறோம்: 3/6 + 2/6 = 5/6. உன்னிடம் அரை தோசை "
        "இருந்து, நண்பன் மூன்றில் ஒரு பங்கு தோசை கொடுத்தால், மொத்தம் 5/6 தோசை கிடைக்கும்."
    ),
    "en": (
        "To add fractions, we first make their denominators equal. In 1/2 + 1/3 the common "
        "denominator is 6: 3/6 + 2/6 = 5/6. If you have half a roti and a friend gives you "
        "a third of a roti more, you have 5/6 of a roti in all."
    ),
}
ROMANISED_HINDI = (
    "Newton ka doosra niyam kehta hai ki kisi vastu par lagne wala bal uske dravyaman aur "
    "tvaran ke gunanphal ke barabar hota hai. Jab tum cycle ko zor se dhakka dete ho, to "
    "woh tezi se aage badhti hai."
)
REFUSALS = {
    "hi": "माफ़ कीजिए, मैं इसमें आपकी मदद नहीं कर सकती। कृपया अपने शिक्षक से पूछें।",
    "ta": "மன்னிக்கவும், இதற்கு என்னால் உதவ முடியாது. உங்கள் ஆசிரியரிடம் கேளுங்கள்.",
    "en": "I'm sorry, but I can't help with that. Please ask your teacher.",
}

_POOL = {lang: sorted({*ANSWERS[lang].split(), *MATH[lang].split()}) for lang in ANSWERS}
_END = {"hi": "।", "ta": ".", "en": "."}


def varied_answer(rng: random.Random, language: str, words: int = 30) -> str:
    """A distinct answer of real words (no two share many bigrams), ending a sentence."""
    letters = [w for w in _POOL[language] if any(ch.isalpha() for ch in w)]
    return " ".join(rng.choice(letters) for _ in range(words)) + _END[language]


def interaction(
    request_id: str,
    *,
    language: str | None = "hi",
    subject: str | None = "physics",
    question: str | None = None,
    answer: str | None = None,
    rating: int | None = 5,
    status: int = 200,
    tags: Iterable[str] = (),
    created_at: float = 1_700_000_000.0,
    track: str = "tara-tutor",
    segment: str = "default",
    completion_tokens: int | None = None,
    messages: list[dict[str, Any]] | None = None,
    student: str | None = "h",
) -> Interaction:
    """An interaction as the gateway logs it, with sensible defaults."""
    lang = language or "en"
    q = question if question is not None else QUESTIONS.get(lang, QUESTIONS["en"])
    return Interaction(
        request_id=request_id,
        created_at=created_at,
        track=track,
        segment=segment,
        variant="stable",
        model="tara-stable",
        student_hash=student,
        subject=subject,
        language=language,
        grade="8",
        status=status,
        completion_tokens=completion_tokens,
        messages=messages
        if messages is not None
        else [{"role": "system", "content": "app prompt"}, {"role": "user", "content": q}],
        answer=answer if answer is not None else ANSWERS.get(lang, ANSWERS["en"]),
        rating=rating,
        tags=list(tags),
    )


def corpus(counts: dict[tuple[str, str], int], seed: int = 7) -> list[Interaction]:
    """Distinct good interactions: ``counts[(language, subject)]`` of each combination."""
    rng = random.Random(seed)
    out = []
    for (language, subject), n in counts.items():
        for i in range(n):
            out.append(
                interaction(
                    f"{language}-{subject}-{i}",
                    language=language,
                    subject=subject,
                    question=f"{QUESTIONS[language]} ({i})",
                    answer=varied_answer(rng, language),
                    created_at=1_700_000_000.0 + i,
                )
            )
    rng.shuffle(out)
    return out


async def stream(items: Iterable[Interaction]) -> AsyncIterator[Interaction]:
    """An async iterator over ``items``, as the interaction log would yield them."""
    for item in items:
        yield item


def test_samples_are_in_their_languages() -> None:
    settings = ValidationSettings()
    for lang in ("hi", "ta", "en"):
        assert check_language(ANSWERS[lang], lang, settings) is None
        assert check_language(MATH[lang], lang, settings) is None
        assert check_language(varied_answer(random.Random(1), lang), lang, settings) is None
