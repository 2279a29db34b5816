"""What the demo's simulated students ask: real questions per subject and language.

Kept as plain data so a reader can see at a glance what traffic the demo
sends; the sandbox answers in the language the question is written in.
"""

from __future__ import annotations

QUESTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("math", "en"): (
        "What is a fraction? Please explain with an example.",
        "How do I find the area of a triangle with base 6 cm and height 4 cm?",
        "Why is any number multiplied by zero equal to zero?",
        "How do I solve 2x + 5 = 17?",
    ),
    ("math", "hi"): (
        "भिन्न क्या होती है? एक उदाहरण से समझाइए।",
        "त्रिभुज का क्षेत्रफल कैसे निकालते हैं?",
        "2x + 5 = 17 को कैसे हल करें?",
        "लघुत्तम समापवर्त्य और महत्तम समापवर्तक में क्या अंतर है?",
    ),
    ("math", "ta"): (
        "பின்னம் என்றால் என்ன? ஒரு உதாரணத்துடன் விளக்குங்கள்.",
        "முக்கோணத்தின் பரப்பளவை எப்படி கண்டுபிடிப்பது?",
        "2x + 5 = 17 என்ற சமன்பாட்டை எப்படி தீர்ப்பது?",
        "பகா எண் என்றால் என்ன?",
    ),
    ("physics", "en"): (
        "What is Newton's second law of motion?",
        "Why does a spoon look bent in a glass of water?",
        "What is the difference between speed and velocity?",
        "How does a simple electric circuit work?",
    ),
    ("physics", "hi"): (
        "न्यूटन का गति का दूसरा नियम क्या है?",
        "पानी के गिलास में चम्मच टेढ़ा क्यों दिखता है?",
        "चाल और वेग में क्या अंतर है?",
        "विद्युत धारा क्या होती है?",
    ),
    ("physics", "ta"): (
        "நியூட்டனின் இரண்டாம் இயக்க விதி என்ன?",
        "தண்ணீர் குவளையில் கரண்டி வளைந்து தெரிவது ஏன்?",
        "வேகத்திற்கும் திசைவேகத்திற்கும் உள்ள வேறுபாடு என்ன?",
        "மின்னோட்டம் என்றால் என்ன?",
    ),
    ("chemistry", "en"): (
        "What is the difference between an acid and a base?",
        "Why does iron rust when it is left in the rain?",
        "What is a chemical equation and how do I balance one?",
        "What are the states of matter?",
    ),
    ("chemistry", "hi"): (
        "अम्ल और क्षार में क्या अंतर है?",
        "बारिश में लोहे पर जंग क्यों लगती है?",
        "रासायनिक समीकरण को संतुलित कैसे करते हैं?",
        "पदार्थ की अवस्थाएँ कौन-कौन सी हैं?",
    ),
    ("chemistry", "ta"): (
        "அமிலத்திற்கும் காரத்திற்கும் உள்ள வேறுபாடு என்ன?",
        "மழையில் இரும்பு துருப்பிடிப்பது ஏன்?",
        "வேதிச் சமன்பாட்டை எப்படி சமன் செய்வது?",
        "பொருளின் நிலைகள் யாவை?",
    ),
}
"""Questions by ``(subject, language)``."""

SUBJECTS: tuple[str, ...] = ("math", "physics", "chemistry")
LANGUAGES: tuple[str, ...] = ("hi", "en", "ta")
LANGUAGE_SHARES: tuple[float, ...] = (0.45, 0.35, 0.20)
"""Roughly who uses Tara: Hindi first, then English, then Tamil."""
GRADES: tuple[str, ...] = ("6", "7", "8", "9", "10", "11", "12")
