"""Settings for window stats, the request index and user-retry detection.

Retention, argued: window stats are kept in two tiers. Fine buckets
(``bucket_seconds``, 10 s) answer the controller's short windows exactly and
live ``fine_retention_seconds`` (2 days). Every delta is also added to an
hourly rollup bucket that lives ``retention_seconds`` (15 days): the longest
read anyone makes is the week-over-week triggers (this week against last week,
14 days back) and a whole default rollout (3 + 4 + 7 = 14 days), plus a day of
slack for paused rollouts. Keeping 10 s buckets for 15 days instead would hold
~130,000 hashes per series and make a week-long read fetch 60,000 of them;
with rollups it reads ~170 hourly hashes plus the fine edges.

The request index lives 30 days: ratings arrive late (a student reopens last
week's answer) and the fine-tuning extraction joins ratings over weeks.

Memory, argued: every structure a process keeps has a bound here, sized for
one embedded gateway (state in process memory) to stay near 150 MiB at any
load and for any time (``bench/bench_soak.py`` measures it); what a bound
pushes out is counted in ``tara_telemetry_dropped_total{sink,reason}``, never
dropped silently. The sizes per entry below were measured with tracemalloc.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DAY = 86_400.0


class TelemetryStatsSettings(BaseModel):
    """How window stats, the request index and retry detection are kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    bucket_seconds: int = Field(10, gt=0)
    """Width of a fine window bucket; the resolution of every window read."""
    rollup_seconds: int = Field(3600, gt=0)
    """Width of a rollup bucket; a multiple of ``bucket_seconds`` (equal disables rollups)."""
    fine_retention_seconds: float = Field(2 * DAY, gt=0)
    """How long fine buckets live after they close."""
    retention_seconds: float = Field(15 * DAY, gt=0)
    """How long rollup buckets live after they close."""
    flush_interval: float = Field(1.0, gt=0)
    """How often the recorder, index writer and retry detector flush, in seconds."""
    max_pending_keys: int = Field(100_000, gt=0)
    """Bound on buckets held locally while the store is down; the oldest are dropped
    (``backlog_full``)."""
    memory_max_buckets: int = Field(100, gt=0)
    """Most window buckets the in-process store keeps (a busy bucket is ~20 KB: 2 MB; one
    series' last quarter hour at 10 s resolution, or four days of hourly rollups).
    Past it, the oldest fine buckets go first (``fine_evicted``: reads of that time fall
    back to hourly rollups, nothing is lost), then the oldest rollups (``memory_full``).
    Redis keeps its buckets in Redis."""
    index_retention_seconds: float = Field(30 * DAY, gt=0)
    """How long a request id can still be rated."""
    index_cache_size: int = Field(50_000, gt=0)
    """Recent request ids kept in each replica's memory (~370 bytes each: 17 MiB). In
    memory state it is the whole index: an id pushed out can no longer be rated
    (``request_index``/``evicted``); with Redis it is a cache and Redis keeps every id."""
    index_lookup_wait: float = Field(2.0, ge=0)
    """How long feedback waits for another replica to publish an unknown request id."""
    user_retry_window_seconds: float = Field(600.0, gt=0)
    """The same question from the same student within this time is a retry."""
    user_retry_memory_size: int = Field(10_000, gt=0)
    """Questions the in-process retry memory keeps (~420 bytes each: 4 MiB); past it the
    oldest are forgotten, and those still inside the window are counted
    (``user_retries``/``memory_full``): a retry of them goes unnoticed. Redis expires its
    own."""
    user_retry_backlog: int = Field(50_000, gt=0)
    """Requests waiting for their retry check (queued, or shared and settling: about
    ``flush_interval + user_retry_settle_seconds`` of traffic); past it the oldest are
    never checked (``user_retries``/``backlog_full``)."""
    user_retry_settle_seconds: float = Field(3.0, ge=0)
    """How long a replica waits after sharing a question before it decides whether an
    earlier ask of it exists, so that every replica has shared its asks by then: keep it
    above ``flush_interval`` (a later ask is then never mistaken for the original)."""

    @model_validator(mode="after")
    def _consistent(self) -> TelemetryStatsSettings:
        if self.rollup_seconds % self.bucket_seconds:
            msg = "rollup_seconds must be a multiple of bucket_seconds"
            raise ValueError(msg)
        if self.retention_seconds < self.fine_retention_seconds:
            msg = "retention_seconds must be at least fine_retention_seconds"
            raise ValueError(msg)
        return self
