"""PostgreSQL schema of the interaction log (JSON as ``jsonb``).

Times stay unix seconds (``double precision``) like :class:`Interaction`, so a
record round-trips exactly and keyset cursors compare the same on both backends.
"""

from __future__ import annotations

from tara.telemetry.migrations import INTERACTION_INDEXES, Migration

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at double precision NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "interactions",
        (
            """
            CREATE TABLE interactions (
                request_id text PRIMARY KEY,
                recorded boolean NOT NULL DEFAULT true,
                created_at double precision NOT NULL,
                track text NOT NULL,
                segment text NOT NULL,
                variant text NOT NULL,
                model text NOT NULL,
                student_hash text,
                subject text,
                language text,
                grade text,
                status integer NOT NULL,
                error_class text,
                latency_s double precision,
                ttft_s double precision,
                prompt_tokens integer,
                completion_tokens integer,
                user_retry boolean NOT NULL DEFAULT false,
                fallback boolean NOT NULL DEFAULT false,
                stream boolean NOT NULL DEFAULT false,
                messages jsonb,
                answer text,
                rating smallint,
                tags jsonb NOT NULL DEFAULT '[]',
                relevance double precision,
                comment text,
                rated_at double precision
            )
            """,
            *INTERACTION_INDEXES,
        ),
    ),
    Migration(
        2,
        "interaction topic",
        # The topic the app named; nullable, so existing rows need no rewrite.
        ("ALTER TABLE interactions ADD COLUMN topic text",),
    ),
)
