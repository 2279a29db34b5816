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
    Migration(
        3,
        "monthly partitions",
        # Partitioned by month of request id (see tara.telemetry.log_partitions). The
        # table as it was becomes the partition of every id before this month: attached,
        # not copied (one scan to check its ids, no rewrite of a 100M-row table); rows
        # with ids from this month on, or without a time, move to the default partition,
        # and the month partitions are created after the migrations, which moves them on.
        (
            "ALTER TABLE interactions RENAME TO interactions_legacy",
            "ALTER TABLE interactions_legacy RENAME CONSTRAINT interactions_pkey"
            " TO interactions_legacy_pkey",
            "ALTER INDEX interactions_created RENAME TO interactions_legacy_created",
            "ALTER INDEX interactions_rollout RENAME TO interactions_legacy_rollout",
            "ALTER INDEX interactions_rating RENAME TO interactions_legacy_rating",
            """ALTER INDEX interactions_language_subject
               RENAME TO interactions_legacy_language_subject""",
            """CREATE TABLE interactions (LIKE interactions_legacy INCLUDING DEFAULTS)
               PARTITION BY RANGE (request_id)""",
            "ALTER TABLE interactions ADD PRIMARY KEY (request_id)",
            "CREATE INDEX interactions_created ON interactions (created_at, request_id)",
            """CREATE INDEX interactions_rollout
               ON interactions (track, segment, variant, created_at, request_id)""",
            "CREATE INDEX interactions_rating ON interactions (rating)",
            """CREATE INDEX interactions_language_subject
               ON interactions (language, subject, created_at, request_id)""",
            "CREATE TABLE interactions_default PARTITION OF interactions DEFAULT",
            """
            DO $$
            DECLARE
                bound text := lpad(to_hex(
                    (extract(epoch FROM date_trunc('month', now() AT TIME ZONE 'UTC'))
                     * 1000)::bigint), 12, '0');
            BEGIN
                EXECUTE format(
                    'WITH moved AS (DELETE FROM interactions_legacy WHERE request_id >= %L'
                    ' RETURNING *) INSERT INTO interactions SELECT * FROM moved', bound);
                EXECUTE format(
                    'ALTER TABLE interactions ATTACH PARTITION interactions_legacy'
                    ' FOR VALUES FROM (MINVALUE) TO (%L)', bound);
            END $$
            """,
        ),
    ),
)
