"""Which interaction log a database URL names: the one place that knows every backend."""

from __future__ import annotations

from tara.telemetry.config import TelemetrySettings
from tara.telemetry.log import InteractionLog
from tara.telemetry.log_sqlite import SqliteInteractionLog


def open_log(database_url: str | None, settings: TelemetrySettings) -> InteractionLog:
    """The log the settings ask for: PostgreSQL for a ``postgres`` URL, else SQLite.

    ``sqlite:///path`` names the SQLite file explicitly; without a URL the
    file is ``settings.sqlite_path``. Nothing connects yet.
    """
    if database_url and database_url.startswith("sqlite:///"):
        return SqliteInteractionLog(database_url.removeprefix("sqlite:///"))
    if database_url and database_url.startswith(("postgres://", "postgresql://")):
        # Imported here: a gateway on SQLite never loads asyncpg (~3 MiB of RSS).
        from tara.telemetry.log_postgres import PostgresInteractionLog

        return PostgresInteractionLog(
            database_url,
            schema=settings.pg_schema,
            min_size=settings.pg_pool_min,
            max_size=settings.pg_pool_max,
            partitions_ahead=settings.pg_partitions_ahead,
        )
    if database_url:
        msg = f"unsupported database_url scheme: {database_url.partition(':')[0]!r}"
        raise ValueError(msg)
    return SqliteInteractionLog(settings.sqlite_path)
