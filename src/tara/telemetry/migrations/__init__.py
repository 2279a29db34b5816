"""Versioned schema migrations of the interaction log, one module per SQL dialect.

Each dialect module holds ``MIGRATIONS``: numbered steps applied in order,
each in its own transaction together with its row in ``schema_version``.
Re-running is a no-op; a step is never edited once released — changes go in
a new step with the next number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its version number, a short name, and its statements."""

    version: int
    name: str
    statements: tuple[str, ...]


INTERACTION_INDEXES: tuple[str, ...] = (
    "CREATE INDEX interactions_created ON interactions (created_at, request_id)",
    # Composite indexes end in the scan order (created_at, request_id), so a
    # filtered keyset page is a range read, not a sort of every match.
    """CREATE INDEX interactions_rollout
       ON interactions (track, segment, variant, created_at, request_id)""",
    "CREATE INDEX interactions_rating ON interactions (rating)",
    """CREATE INDEX interactions_language_subject
       ON interactions (language, subject, created_at, request_id)""",
)
"""The indexes of step 1, the same statements in both dialects (released: never edit)."""


class MigrationError(Exception):
    """The migration list is malformed, or the database is newer than this code."""


def pending(migrations: Sequence[Migration], applied: Iterable[int]) -> list[Migration]:
    """The steps still to apply, in order; raises :class:`MigrationError` on a bad list.

    A database holding a version this code does not know was migrated by a
    newer release; running against it would be guesswork, so that is an error.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        msg = f"migration versions must be unique, positive and ascending: {versions}"
        raise MigrationError(msg)
    done = set(applied)
    unknown = done - set(versions)
    if unknown:
        msg = f"database has schema versions {sorted(unknown)} unknown to this release"
        raise MigrationError(msg)
    return [m for m in migrations if m.version not in done]
