"""Settings of the interaction log and its background writer (``Settings.telemetry``).

Where the log lives is the top-level ``database_url`` (PostgreSQL); without it
the log is the SQLite file ``sqlite_path``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tara.telemetry.interactions import Capture


class TelemetrySettings(BaseModel):
    """How interactions are captured, batched, stored and kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    capture: Capture = "full"
    """``full`` keeps messages and answers, ``metadata`` drops the text, ``off`` logs nothing."""
    sqlite_path: Path = Path("tara-data/interactions.db")
    """SQLite file of the interaction log when no ``database_url`` is set."""
    pg_schema: str = Field("public", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """PostgreSQL schema holding the interaction log."""
    pg_pool_min: int = Field(1, ge=0)
    """Fewest PostgreSQL connections kept open."""
    pg_pool_max: int = Field(4, ge=1)
    """Most PostgreSQL connections."""
    pg_partitions_ahead: int = Field(3, ge=1)
    """Monthly partitions of the PostgreSQL log kept ready past the current month (created
    at every gateway start and every ``tara log purge``)."""
    queue_size: int = Field(5_000, gt=0)
    """Records waiting to be written (up to ~1.3 KB each with text: 7 MB); beyond this
    they are dropped (``queue_full``)."""
    batch_size: int = Field(500, gt=0)
    """Most records written in one batch."""
    flush_interval: float = Field(1.0, gt=0)
    """Longest a record waits for its batch to fill before being written anyway."""
    max_attempts: int = Field(3, ge=1)
    """Tries of a lone record the store refuses while it answers, before it is dropped
    (``rejected``); the rest of its batch is written."""
    retry_initial_backoff: float = Field(0.1, ge=0)
    """First wait before trying a refused record again, or probing a store that is down
    (doubling)."""
    retry_max_backoff: float = Field(5.0, ge=0)
    """Longest wait between two tries, or two probes of a store that is down."""
    spool_path: Path = Path("tara-data/spool/interactions.jsonl")
    """Local file that keeps records during a log outage (created when first needed;
    one process per file); replayed in order when the log is back, and at the next start."""
    spool_max_bytes: int = Field(1 << 30, ge=0)
    """Largest spool file (1 GiB); records beyond it are dropped (``spool_full``); 0 turns
    spooling off."""
    shutdown_timeout: float = Field(10.0, ge=0)
    """Seconds at shut-down to write what is queued; the rest is counted as dropped."""
    retention_days: float = Field(30.0, gt=0)
    """Default age for ``tara log purge``."""
