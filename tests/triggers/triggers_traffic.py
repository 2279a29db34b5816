"""Interaction traffic shared by the trigger tests: a good week, then a bad one."""

from __future__ import annotations

import dataclasses
from typing import Any

from tara.telemetry.interactions import Interaction
from tara.telemetry.log import InteractionLog
from tara.triggers.config import TriggerSettings
from tara.triggers.model import Scope

DAY = 86_400.0
NOW = 1_700_000_000.0
CFG = TriggerSettings()
HI_MATH = Scope(language="hi", subject="math")
TA_PHYS = Scope(language="ta", subject="physics")


class Maker:
    """Interactions with unique ids."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, created_at: float, **changes: Any) -> Interaction:
        self.n += 1
        ix = Interaction(
            request_id=f"req-{self.n:06d}",
            created_at=created_at,
            track="tara-tutor",
            segment="all",
            variant="stable",
            model="tara-stable",
            student_hash="ab" * 32,
            subject="math",
            language="hi",
            grade="8",
            status=200,
            latency_s=1.0,
        )
        return dataclasses.replace(ix, **changes)


def traffic(now: float) -> list[Interaction]:
    """A week of bad hi×math and new things, after a week of good hi×math."""
    make = Maker()
    cur, prev = now - 3 * DAY, now - 10 * DAY
    out = [make(prev + i, rating=5) for i in range(40)]
    out += [make(prev + 100 + i, subject="physics", language="ta", rating=4) for i in range(5)]
    out += [make(cur + i, rating=5, relevance=0.9) for i in range(20)]
    out += [make(cur + 100 + i, rating=1, relevance=0.2, tags=["cultural"]) for i in range(6)]
    out += [make(cur + 200 + i, rating=2, tags=["wrong"], user_retry=True) for i in range(14)]
    out += [make(cur + 300 + i, subject="biology", grade="11") for i in range(25)]
    out += [make(now + 10, rating=5)]  # after "now": never counted
    out += [make(now - 40 * DAY, rating=5)]  # older than either period
    return out


async def fill(log: InteractionLog, interactions: list[Interaction]) -> None:
    await log.migrate()
    await log.write_batch(interactions)
