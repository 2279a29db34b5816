"""Dataset build throughput: N synthetic interactions through ``tara.finetune.prepare``.

Interactions come from a generator (nothing is held in memory) with real
Hindi, Tamil and English tutoring text: each answer mixes general tutoring
sentences, sentences with Indian names, objects, cities and numbers, a
subject sentence and a formula, so answers rarely repeat. A known share is
made faulty (low rating, error status, wrong script, refusal, truncation,
phone number, student's cultural flag, exact and near duplicates) so every
rule does real work, and 50,000 students sometimes ask a question again (a
leakage cluster the split keeps whole). Reports wall time, rate, CPU, peak
RSS, the rule counts and whether every combination's split is exact.

    .venv/bin/python bench/bench_prepare.py --n 1000000

Last measured (issue 12, exact split + duplicates confirmed at the end): 1M interactions in
193.6 s wall on a shared, loaded machine (load 7.5 on 2 cores); CPU 30.0 s main + 65.2 s in
one worker, so about 65 s on an idle machine with ``--workers 1`` (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tara.finetune.config import FinetuneSettings
from tara.finetune.prepare import prepare
from tara.telemetry.interactions import Interaction

GENERAL = {
    "hi": [
        "चलो इसे एक आसान उदाहरण से समझते हैं।",
        "पहले हम देखते हैं कि सवाल में क्या दिया गया है।",
        "अब हर कदम को ध्यान से हल करते हैं।",
        "याद रखो, अभ्यास से ही समझ पक्की होती है।",
        "तुम्हारे घर की रसोई में भी यही नियम काम करता है।",
        "इस तरह हमें सही उत्तर मिल जाता है।",
        "अगर कोई कदम समझ न आए तो मुझसे फिर से पूछ लेना।",
        "यह बात परीक्षा में भी बहुत काम आती है।",
        "ध्यान दो कि इकाइयाँ हमेशा साथ में लिखनी चाहिए।",
        "एक बार खुद से भी कोशिश करके देखो।",
    ],
    "ta": [
        "இதை ஒரு எளிய உதாரணத்துடன் புரிந்துகொள்வோம்.",
        "முதலில் கேள்வியில் என்ன கொடுக்கப்பட்டுள்ளது என்று பார்ப்போம்.",
        "இப்போது ஒவ்வொரு படியையும் கவனமாகச் செய்வோம்.",
        "பயிற்சி செய்தால் புரிதல் உறுதியாகும் என்பதை நினைவில் கொள்.",
        "உங்கள் வீட்டு சமையலறையிலும் இதே விதி வேலை செய்கிறது.",
        "இவ்வாறு நமக்கு சரியான விடை கிடைக்கிறது.",
        "ஏதாவது படி புரியவில்லை என்றால் மீண்டும் என்னிடம் கேள்.",
        "இது தேர்விலும் மிகவும் பயனுள்ளதாக இருக்கும்.",
        "அலகுகளை எப்போதும் சேர்த்து எழுத வேண்டும் என்பதைக் கவனி.",
        "ஒரு முறை நீயே முயற்சி செய்து பார்.",
    ],
    "en": [
        "Let's understand this with a simple example.",
        "First, let's see what the question gives us.",
        "Now let's solve it carefully, one step at a time.",
        "Remember, practice is what makes understanding strong.",
        "The same rule works in your kitchen at home.",
        "This is how we reach the correct answer.",
        "If any step is unclear, just ask me again.",
        "This idea is very useful in exams too.",
        "Notice that we always write the units along with the numbers.",
        "Try one similar problem on your own.",
    ],
}
NAMES = {
    "hi": [
        "अनु",
        "रवि",
        "मीरा",
        "अर्जुन",
        "प्रिया",
        "कबीर",
        "सीता",
        "राहुल",
        "आयशा",
        "इमरान",
        "जोसेफ",
        "गुरप्रीत",
    ],
    "ta": [
        "அனு",
        "ரவி",
        "மீரா",
        "அர்ஜுன்",
        "பிரியா",
        "கபீர்",
        "சீதா",
        "ராகுல்",
        "ஆயிஷா",
        "இம்ரான்",
        "ஜோசப்",
        "குர்பிரீத்",
    ],
    "en": [
        "Anu",
        "Ravi",
        "Meera",
        "Arjun",
        "Priya",
        "Kabir",
        "Sita",
        "Rahul",
        "Ayesha",
        "Imran",
        "Joseph",
        "Gurpreet",
    ],
}
OBJECTS = {
    "hi": ["आम", "केले", "संतरे", "पेंसिलें", "किताबें", "गुब्बारे", "लड्डू", "कंचे"],
    "ta": ["மாம்பழங்கள்", "வாழைப்பழங்கள்", "ஆரஞ்சுகள்", "பென்சில்கள்", "புத்தகங்கள்", "பலூன்கள்", "லட்டுகள்", "கோலிகள்"],
    "en": ["mangoes", "bananas", "oranges", "pencils", "books", "balloons", "laddoos", "marbles"],
}
CITIES = {
    "hi": ["दिल्ली", "चेन्नई", "पटना", "जयपुर", "भोपाल", "लखनऊ", "मदुरै", "कोयंबटूर"],
    "ta": ["டெல்லி", "சென்னை", "பாட்னா", "ஜெய்ப்பூர்", "போபால்", "லக்னோ", "மதுரை", "கோயம்புத்தூர்"],
    "en": ["Delhi", "Chennai", "Patna", "Jaipur", "Bhopal", "Lucknow", "Madurai", "Coimbatore"],
}
STORY = {
    "hi": (
        "मान लो {name} के पास {n} {obj} हैं।",
        "{city} की {name} रोज़ {m} मिनट अभ्यास करती है।",
        "{name} ने बाज़ार से {k} रुपये के {obj} खरीदे।",
    ),
    "ta": (
        "{name} என்பவரிடம் {n} {obj} உள்ளன என்று வைத்துக்கொள்வோம்.",
        "{city} நகரில் {name} தினமும் {m} நிமிடம் பயிற்சி செய்கிறார்.",
        "{name} சந்தையில் {k} ரூபாய்க்கு {obj} வாங்கினார்.",
    ),
    "en": (
        "Suppose {name} has {n} {obj}.",
        "{name} from {city} practises for {m} minutes every day.",
        "{name} bought {obj} worth {k} rupees at the market.",
    ),
}
SUBJECT = {
    ("hi", "math"): ("प्रतिशत का मतलब है सौ में से कितना।", "उदाहरण: {a} + {b} = {c}।"),
    ("hi", "physics"): (
        "बल किसी वस्तु की गति को बदल सकता है।",
        "अगर द्रव्यमान {a} kg और त्वरण {b} m/s² है, तो बल F = m × a = {c} N होगा।",
    ),
    ("hi", "chemistry"): (
        "नींबू का रस अम्लीय होता है, इसलिए उसका स्वाद खट्टा लगता है।",
        "{a} ग्राम नमक को {b} ग्राम पानी में घोलने पर {c} ग्राम घोल बनता है।",
    ),
    ("ta", "math"): ("சதவீதம் என்றால் நூற்றில் எத்தனை என்று பொருள்.", "உதாரணம்: {a} + {b} = {c}."),
    ("ta", "physics"): (
        "விசை ஒரு பொருளின் இயக்கத்தை மாற்றும்.",
        "நிறை {a} kg, முடுக்கம் {b} m/s² என்றால், விசை F = m × a = {c} N ஆகும்.",
    ),
    ("ta", "chemistry"): (
        "எலுமிச்சை சாறு அமிலத்தன்மை கொண்டது, அதனால் அது புளிப்பாக இருக்கிறது.",
        "{a} கிராம் உப்பை {b} கிராம் நீரில் கரைத்தால் {c} கிராம் கரைசல் கிடைக்கும்.",
    ),
    ("en", "math"): ("Percent means how many out of a hundred.", "Example: {a} + {b} = {c}."),
    ("en", "physics"): (
        "A force can change how an object moves.",
        "If the mass is {a} kg and the acceleration is {b} m/s², the force is {c} N.",
    ),
    ("en", "chemistry"): (
        "Lemon juice is acidic, which is why it tastes sour.",
        "Dissolving {a} g of salt in {b} g of water gives {c} g of solution.",
    ),
}
QUESTION = {
    "hi": "सवाल {i}: {topic} को उदाहरण के साथ समझाओ।",
    "ta": "கேள்வி {i}: {topic} பற்றி உதாரணத்துடன் விளக்கவும்.",
    "en": "Question {i}: explain {topic} with an example.",
}
TOPIC = {
    ("hi", "math"): "प्रतिशत",
    ("hi", "physics"): "बल",
    ("hi", "chemistry"): "अम्ल",
    ("ta", "math"): "சதவீதம்",
    ("ta", "physics"): "விசை",
    ("ta", "chemistry"): "அமிலம்",
    ("en", "math"): "percentages",
    ("en", "physics"): "force",
    ("en", "chemistry"): "acids",
}
REFUSAL = {
    "hi": "माफ़ कीजिए, मैं इसमें मदद नहीं कर सकती।",
    "ta": "மன்னிக்கவும், இதற்கு என்னால் உதவ முடியாது.",
    "en": "I'm sorry, but I can't help with that request.",
}
COMBOS = [(lang, subj) for lang in ("hi", "ta", "en") for subj in ("math", "physics", "chemistry")]
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def _vocabulary(lang: str) -> list[str]:
    """Every word of the language's sentences above: real words to vary answers with."""
    texts = [*GENERAL[lang], *NAMES[lang], *OBJECTS[lang], *CITIES[lang], *STORY[lang]]
    texts += [t for (lg, _), pair in SUBJECT.items() if lg == lang for t in pair]
    words = {w.strip("।.,!?:") for t in texts for w in t.split() if "{" not in w}
    return sorted(w for w in words if w)


VOCABULARY = {lang: (_vocabulary(lang) * 256)[:256] for lang in GENERAL}
"""256 words per language, so that a random byte picks one (``map`` over bytes: no Python loop)."""
_RNG = random.Random(20240601)


def answer_text(i: int, lang: str, subject: str) -> str:
    """A varied, real-language answer for record ``i``.

    Fixed sentences give it the shape of a tutor's answer; a passage of
    words drawn from the language's vocabulary makes any two answers about
    as different as answers to different questions are (bigram Jaccard
    around 0.1), so near-duplicate detection has real work but few hits.
    """
    x = (i * _MIX) & _MASK
    names, objs = NAMES[lang], OBJECTS[lang]
    fixed, formula = SUBJECT[(lang, subject)]
    a, b = 2 + x % 97, 3 + (x >> 7) % 89
    story = STORY[lang][(x >> 14) % 3]
    parts = [
        GENERAL[lang][(x >> 18) % 10],
        story.format(
            name=names[(x >> 22) % 12],
            n=(x >> 26) % 900 + 3,
            m=(x >> 26) % 50 + 5,
            k=(x >> 26) % 400 + 10,
            obj=objs[(x >> 36) % 8],
            city=CITIES[lang][(x >> 40) % 8],
        ),
        fixed,
        " ".join(map(VOCABULARY[lang].__getitem__, _RNG.randbytes(24)))
        + ("।" if lang == "hi" else "."),
        formula.format(a=a, b=b, c=a + b if subject != "physics" else a * b),
    ]
    return " ".join(parts)


def _faulty(i: int, lang: str, answer: str, last: str) -> tuple[str, int, int, list[str]]:
    """Answer, status, rating and tags for record ``i``, with a fault for some records."""
    kind = (i * 7919) % 200
    if kind < 40:
        return answer, 200, 2 + kind % 2, []  # 20% rated below 4
    if kind < 46:
        return answer, 502, 5, []  # 3% upstream errors
    if kind < 48:
        return REFUSAL[lang], 200, 4, []
    if kind < 50:
        return answer[: len(answer) // 2].rstrip("।. "), 200, 4, []  # cut mid-sentence
    if kind < 52:
        return GENERAL["en"][i % 10] * 4 if lang != "en" else GENERAL["hi"][i % 10] * 4, 200, 5, []
    if kind < 54:
        return answer + " मुझे +91 98765 43210 पर कॉल करो।", 200, 5, []  # phone: redacted
    if kind < 55:
        return answer, 200, 4, ["cultural"]
    if kind < 57:
        return last, 200, 5, []  # exact duplicate of the previous answer in this combination
    if kind < 59:
        return f"{last.split()[0]} {last}", 200, 4, []  # near duplicate: one word more
    return answer, 200, 4 + i % 2, []


STUDENTS = 50_000
RETRY_EVERY = 50
"""Every 50th record is a student asking their previous question again (a leakage cluster)."""


async def synthetic_interactions(n: int) -> AsyncIterator[Interaction]:
    """``n`` interactions across the nine language×subject combinations, by 50,000 students."""
    start = time.time() - n
    last: dict[tuple[str, str], tuple[str, str]] = {}
    asked: dict[str, tuple[str, str, str]] = {}
    for i in range(n):
        lang, subject = COMBOS[((i * 0x9E3779B1) >> 16) % 9]
        student = f"student-{i % STUDENTS}"
        question = QUESTION[lang].format(i=i, topic=TOPIC[(lang, subject)])
        if i % RETRY_EVERY == 0 and student in asked:
            lang, subject, question = asked[student]
        asked[student] = (lang, subject, question)
        answer = answer_text(i, lang, subject)
        prev_q, prev_a = last.get((lang, subject), (question, answer))
        text, status, rating, tags = _faulty(i, lang, answer, prev_a)
        if text.startswith(prev_a):
            question = prev_q
        last[(lang, subject)] = (question, answer)
        yield Interaction(
            request_id=f"req-{i:08d}",
            created_at=start + i,
            track="tara-tutor",
            segment="default",
            variant="stable",
            model="tara-stable",
            student_hash=student,
            subject=subject,
            language=lang,
            grade="8",
            status=status,
            messages=[{"role": "user", "content": question}],
            answer=text,
            rating=rating,
            tags=tags,
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run(n: int, out: Path, workers: int) -> None:
    """Build the dataset and print time, rate, CPU, peak RSS and counts."""
    t0, c0, w0 = time.perf_counter(), time.process_time(), _children_cpu()
    result = await prepare(synthetic_interactions(n), FinetuneSettings(workers=workers), out)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    worker_cpu = _children_cpu() - w0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    m = result.manifest
    total = cpu + worker_cpu
    print(
        f"interactions: {n}  workers: {workers}  time: {elapsed:.1f} s  rate: {n / elapsed:,.0f}/s"
    )
    print(
        f"CPU time: main {cpu:.1f} s + workers {worker_cpu:.1f} s = {total:.1f} s "
        f"({total / n * 1e6:.1f} µs per interaction; the machine is shared)"
    )
    print(f"peak RSS: main {rss_mb:.0f} MB, worker {child_mb:.0f} MB")
    print(f"extraction: {m['extraction']}")
    print(f"rules: {m['rules']}  redactions: {m['redactions']}")
    print(f"written: {m['totals']['written']}")
    combos = m["combinations"]
    exact = sum(1 for c in combos if c["split"] and c["split"]["exact"])
    largest = max((c["split"]["largest_cluster"] for c in combos if c["split"]), default=0)
    print(f"split: {exact} of {len(combos)} combinations exact; largest cluster {largest}")


async def generator_only(n: int) -> float:
    """Seconds the generator alone takes for ``n`` records (the floor of the build)."""
    t0 = time.perf_counter()
    async for _ in synthetic_interactions(n):
        pass
    return time.perf_counter() - t0


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="interactions to generate")
    parser.add_argument("--out", type=Path, default=None, help="output directory (temp if unset)")
    parser.add_argument("--workers", type=int, default=1, help="screening worker processes")
    args = parser.parse_args()
    gen_s = asyncio.run(generator_only(min(args.n, 100_000)))
    print(f"generator alone: {gen_s / min(args.n, 100_000) * 1e6:.1f} µs/record")
    if args.out is not None:
        asyncio.run(run(args.n, args.out, args.workers))
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.n, Path(tmp), args.workers))


if __name__ == "__main__":
    main()
