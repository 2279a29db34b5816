"""SQLite schema of the interaction log (JSON kept as text, booleans as 0/1)."""

from __future__ import annotations

from tara.telemetry.migrations import INTERACTION_INDEXES, Migration

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "interactions",
        (
            """
            CREATE TABLE interactions (
                request_id TEXT PRIMARY KEY,
                recorded INTEGER NOT NULL DEFAULT 1,
                created_at REAL NOT NULL,
                track TEXT NOT NULL,
                segment TEXT NOT NULL,
                variant TEXT NOT NULL,
                model TEXT NOT NULL,
                student_hash TEXT,
                subject TEXT,
                language TEXT,
                grade TEXT,
                status INTEGER NOT NULL,
                error_class TEXT,
                latency_s REAL,
                ttft_s REAL,
                prompt_tokens INTEGER,
                completion_tokens INTEGER,
                user_retry INTEGER NOT NULL DEFAULT 0,
                fallback INTEGER NOT NULL DEFAULT 0,
                stream INTEGER NOT NULL DEFAULT 0,
                messages TEXT,
                answer TEXT,
                rating INTEGER,
                tags TEXT NOT NULL DEFAULT '[]',
                relevance REAL,
                comment TEXT,
                rated_at REAL
            )
            """,
            *INTERACTION_INDEXES,
        ),
    ),
    Migration(
        2,
        "interaction topic",
        # The topic the app named; nullable, so existing rows need no rewrite.
        ("ALTER TABLE interactions ADD COLUMN topic TEXT",),
    ),
    Migration(
        3,
        "monthly partitions",
        # PostgreSQL only (a laptop's SQLite file needs no partitions): the step is
        # recorded so both dialects keep the same numbering.
        (),
    ),
)
