"""What one ``tara triggers check`` costs over a large interaction log, and what topics add.

Writes ``--rows`` interactions (two weeks; Hindi, Tamil and English questions
in math, physics and chemistry, ~1 KB each, rated, some tagged) into a
SQLite log in a temp dir, then times:

- the whole check (``run_check``: both log scans, every rule, the cooldown),
  once with no topic named (every topic derived from the question) and once
  with every topic named by the app (no derivation);
- topic derivation alone, per question (the lexicon over the same questions);
- the rules alone (``evaluate`` over the observations).

CPU seconds on a shared machine move by ±15%; the rows are the point, not
the third digit.

    .venv/bin/python bench/bench_triggers.py --rows 100000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tara.settings import Settings
from tara.telemetry.interactions import Interaction
from tara.telemetry.log_sqlite import SqliteInteractionLog
from tara.triggers.check import run_check
from tara.triggers.config import TriggerSettings
from tara.triggers.reader import TelemetryReader
from tara.triggers.rules import evaluate
from tara.triggers.state import TriggerState
from tara.triggers.topics import load_lexicon, question_text

DAY = 86_400.0
QUESTIONS = {
    ("hi", "math"): "द्विघात समीकरण x² - {n}x + 6 = 0 को हल कीजिए और हर चरण समझाइए।",
    ("ta", "physics"): "{n} கிலோ எடையுள்ள பொருளின் மீது செயல்படும் விசை என்ன? விளக்குக.",
    ("en", "chemistry"): "Why does an acid with pH {n} react with chalk, and what salt forms?",
}
ANSWER = "A step-by-step answer of about a kilobyte, as a tutor would write it. " * 14


def interactions(n: int, now: float, *, named: bool) -> list[Interaction]:
    """``n`` interactions spread over the two periods a check reads."""
    combos = list(QUESTIONS)
    out = []
    for i in range(n):
        language, subject = combos[i % len(combos)]
        question = QUESTIONS[(language, subject)].format(n=i % 97)
        out.append(
            Interaction(
                request_id=f"req-{i:08d}",
                created_at=now - 14 * DAY + i * (14 * DAY / n),
                track="tara-tutor",
                segment="all",
                variant="stable",
                model="tara-stable",
                student_hash=f"{i % 5000:064x}",
                subject=subject,
                language=language,
                grade=str(6 + i % 7),
                status=200,
                topic="fixed-topic" if named else None,
                latency_s=0.5 + (i % 50) / 50,
                user_retry=i % 9 == 0,
                messages=[{"role": "user", "content": question}],
                answer=ANSWER,
                rating=1 + i % 5,
                tags=["wrong"] if i % 11 == 0 else [],
            )
        )
    return out


async def fill(path: Path, rows: list[Interaction]) -> None:
    log = SqliteInteractionLog(str(path))
    await log.migrate()
    for start in range(0, len(rows), 2000):
        await log.write_batch(rows[start : start + 2000])
    await log.aclose()


async def timed_check(path: Path, now: float, state: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of one check, and how many results it gave."""
    settings = Settings(database_url=f"sqlite:///{path}", triggers=TriggerSettings(state_dir=state))
    wall, cpu = time.perf_counter(), time.process_time()
    report = await run_check(settings, now=now)
    return time.perf_counter() - wall, time.process_time() - cpu, len(report.verdicts)


async def timed_rules(path: Path, now: float, state: Path) -> float:
    """Seconds per ``evaluate`` over the observations of the log (best of 20)."""
    cfg = TriggerSettings(state_dir=state)
    log = SqliteInteractionLog(str(path))
    try:
        obs = await TelemetryReader(log, cfg, min_rating=4).read(now, TriggerState.load(state))
    finally:
        await log.aclose()
    best = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        evaluate(obs, cfg, subjects=["math"], languages=["hi"])
        best = min(best, time.perf_counter() - t0)
    return best


def derivation_us(rows: list[Interaction]) -> float:
    """Microseconds to derive one topic (text extraction and lexicon), best of 3 passes."""
    lexicon = load_lexicon()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for ix in rows:
            lexicon.derive(ix.subject, question_text(ix.messages))
        best = min(best, time.perf_counter() - t0)
    return best / len(rows) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="interactions (100,000)")
    args = parser.parse_args()
    now = time.time()
    print("| log | rows | check wall (s) | check CPU (s) | results |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="tara-bench-triggers-") as tmp:
        work = Path(tmp)
        for named in (False, True):
            rows = interactions(args.rows, now, named=named)
            path = work / f"log-{named}.db"
            await fill(path, rows)
            wall, cpu, results = await timed_check(path, now, work)
            label = "every topic named by the app" if named else "every topic derived"
            print(f"| {label} | {args.rows:,} | {wall:.2f} | {cpu:.2f} | {results} |")
        derive = derivation_us(interactions(10_000, now, named=False))
        rules_s = await timed_rules(work / "log-False.db", now, work)
    print(f"\ntopic derivation: {derive:.1f} µs per question; evaluate: {rules_s * 1e3:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
