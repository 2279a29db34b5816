"""Every Prometheus metric of Tara, created once per registry by one recorder.

The names, types and labels of the contract metrics are fixed by DESIGN.md;
dashboards and alert rules depend on them. Label values are bounded: subjects
and languages outside the configured lists fold into ``other`` (a missing one
is ``none``), statuses are HTTP codes as text, and no label ever carries a
student id. The recorder is also an :class:`~tara.telemetry.interactions.InteractionSink`,
so the gateway hands it finished interactions like any other sink.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Iterator
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tara.telemetry.interactions import Interaction, Labelled
from tara.telemetry.metric_tally import CounterTally, Folder, HistogramTally

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Request duration buckets (seconds): tutoring answers take from milliseconds to minutes."""

TTFT_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0,
)  # fmt: skip
"""Time-to-first-token buckets (seconds): what a student waits before text appears."""

OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
"""Gateway overhead buckets (seconds): a fraction of a millisecond when all is well."""

RATING_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0)
"""Feedback ratings are integers 1..5, one bucket each."""

LABELLED_TAGS = ("cultural", "irrelevant", "wrong", "language")
"""Feedback tags with their own label value (a subset of
:data:`tara.telemetry.pipeline.FEEDBACK_TAGS`, the tags accepted); others count as ``other``."""

OTHER = "other"
NONE = "none"


class InFlight:
    """A plain count of requests being served, read by the in-flight gauge when scraped.

    The gateway changes it twice per request; a bare int costs a fraction of a
    gauge's locked ``inc``/``dec``, and the event loop is its only writer.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def value(self) -> float:
        """The current count (the gauge's read function)."""
        return float(self.count)


class MetricsRecorder:
    """All of Tara's Prometheus metrics on one registry, with bounded label values.

    Use :meth:`on` to get the recorder of a registry (created on first use),
    so the gateway, controller and triggers in one process share the metrics.
    """

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, MetricsRecorder]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self,
        registry: CollectorRegistry,
        subjects: Iterable[str] = (),
        languages: Iterable[str] = (),
        tags: Iterable[str] = LABELLED_TAGS,
    ) -> None:
        self.registry = registry
        self.subjects = frozenset(subjects)
        self.languages = frozenset(languages)
        self.tags = frozenset(tags)
        r = registry
        # First in the registry: every collection folds the hot path's tallies, then reads.
        self._folder = Folder(r, self._tallies)
        # -- contract metrics (DESIGN.md) ---------------------------------
        self.requests = Counter(
            "tara_requests_total",
            "Chat requests answered, by outcome status.",
            ["track", "variant", "subject", "language", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "tara_request_duration_seconds",
            "Time from request arrival to the last byte of the answer.",
            ["track", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "tara_time_to_first_token_seconds",
            "Time from request arrival to the first streamed content token.",
            ["track", "variant"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.gateway_overhead = Histogram(
            "tara_gateway_overhead_seconds",
            "Time the gateway itself added to a routed chat request: arrival to the last byte"
            " minus the time spent waiting on the upstream (attempts, backoff, reads).",
            ["track", "variant", "stream"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.upstream_retries = Counter(
            "tara_upstream_retries_total",
            "Upstream attempts that failed before the first byte and were retried.",
            ["track", "variant", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "tara_fallbacks_total",
            "Canary requests that failed and were served by the stable model.",
            ["track", "reason"],
            registry=r,
        )
        self.user_retries = Counter(
            "tara_user_retries_total",
            "Students asking again: X-Tara-Retry, or the same question repeated.",
            ["track", "variant", "subject", "language"],
            registry=r,
        )
        self.feedback_rating = Histogram(
            "tara_feedback_rating",
            "Student ratings (1..5) of answers.",
            ["track", "variant", "subject", "language"],
            buckets=RATING_BUCKETS,
            registry=r,
        )
        self.feedback_tags = Counter(
            "tara_feedback_tags_total",
            "Feedback tags (cultural, irrelevant, wrong, language, other).",
            ["track", "variant", "tag"],
            registry=r,
        )
        self.tokens = Counter(
            "tara_tokens_total",
            "Tokens used, by kind (prompt, completion).",
            ["track", "variant", "kind"],
            registry=r,
        )
        self.rollout_canary_weight = Gauge(
            "tara_rollout_canary_weight",
            "Share of the segment's students routed to the canary (0..1).",
            ["track", "segment"],
            registry=r,
        )
        self.rollout_stage = Gauge(
            "tara_rollout_stage",
            "Index of the rollout stage the segment is in.",
            ["track", "segment"],
            registry=r,
        )
        self.rollout_decisions = Counter(
            "tara_rollout_decisions_total",
            "Controller decisions (promote, hold, rollback, ...).",
            ["track", "decision"],
            registry=r,
        )
        self.controller_leadership_lost = Counter(
            "tara_controller_leadership_lost_total",
            "Tenures a rollout controller lost while leading: its lease ran out (expired) or a "
            "write was refused because a newer leader exists (fenced).",
            ["reason"],
            registry=r,
        )
        for reason in ("expired", "fenced"):
            self.controller_leadership_lost.labels(reason)
        self.trigger_fired = Counter(
            "tara_trigger_fired_total", "Fine-tuning triggers that fired.", ["trigger"], registry=r
        )
        self.finetune_runs = Counter(
            "tara_finetune_runs_total",
            "Fine-tuning runs entering each status (pending: started; promoted, failed, "
            "rejected, rolled_back, cancelled: ended).",
            ["status"],
            registry=r,
        )
        self.finetune_runs_open = Gauge(
            "tara_finetune_runs_open",
            "Fine-tuning runs in progress, by the state they are in.",
            ["state"],
            registry=r,
        )
        self.finetune_run_state_age = Gauge(
            "tara_finetune_run_state_age_seconds",
            "How long the longest-waiting open fine-tuning run has been in its state (0: none).",
            ["state"],
            registry=r,
        )
        # -- operational metrics ------------------------------------------
        self.request_errors = Counter(
            "tara_request_errors_total",
            "Requests that ended in an error (also mid-stream), by error class.",
            ["track", "variant", "error_class"],
            registry=r,
        )
        self.rejected = Counter(
            "tara_rejected_requests_total",
            "Requests refused with a 4xx (bad input, auth, size, method, unknown route or id).",
            ["status", "route"],
            registry=r,
        )
        self.in_flight = Gauge(
            "tara_requests_in_flight", "Chat requests being served right now.", registry=r
        )
        self.active = InFlight()
        """What ``tara_requests_in_flight`` reports: change ``active.count``, not the gauge."""
        self.in_flight.set_function(self.active.value)
        self.routing_table_healthy = Gauge(
            "tara_routing_table_healthy",
            "1 while the routing table refreshes from its store, 0 while serving a stale copy.",
            registry=r,
        )
        self.routing_table_age = Gauge(
            "tara_routing_table_age_seconds",
            "Seconds since the routing table was last loaded from its store.",
            registry=r,
        )
        self.routing_table_version = Gauge(
            "tara_routing_table_version", "Version of the routing table in use.", registry=r
        )
        self.interactions_dropped = Counter(
            "tara_interactions_dropped_total",
            "Interaction records never written to the log, by reason (queue_full, rejected,"
            " spool_full, spool_torn, shutdown_timeout, closed, sink_error).",
            ["reason"],
            registry=r,
        )
        self.interaction_log_up = Gauge(
            "tara_interaction_log_up",
            "1 while interaction records go straight to the log; 0 while it is down or not"
            " migrated yet and records are spooled.",
            registry=r,
        )
        self.interaction_spool_records = Gauge(
            "tara_interaction_spool_records",
            "Interaction records in the local spool, waiting for the log to come back.",
            registry=r,
        )
        self.interaction_spool_bytes = Gauge(
            "tara_interaction_spool_bytes",
            "Size of the local spool file (bounded by telemetry.spool_max_bytes).",
            registry=r,
        )
        self.telemetry_dropped = Counter(
            "tara_telemetry_dropped_total",
            "Window-stats buckets, request-index entries and user-retry asks a store refused,"
            " that overflowed a backlog, or that a bounded in-memory structure pushed out.",
            ["sink", "reason"],
            registry=r,
        )
        self._status_text: dict[int, str] = {}
        # What the hot path adds to between collections (see tara.telemetry.metric_tally).
        self._req_tallies: dict[tuple[str, str, str, str, str], CounterTally] = {}
        self._variant_tallies: dict[
            tuple[str, str], tuple[HistogramTally, HistogramTally, CounterTally, CounterTally]
        ] = {}
        self._overhead_tallies: dict[tuple[str, str, bool], HistogramTally] = {}

    @classmethod
    def on(
        cls,
        registry: CollectorRegistry,
        subjects: Iterable[str] = (),
        languages: Iterable[str] = (),
    ) -> MetricsRecorder:
        """The registry's recorder, created on first use (later label lists are ignored)."""
        recorder = cls._by_registry.get(registry)
        if recorder is None:
            recorder = cls(registry, subjects, languages)
            cls._by_registry[registry] = recorder
        return recorder

    # -- bounded label values ---------------------------------------------
    def subject_label(self, subject: str | None) -> str:
        """A configured subject, ``none`` when missing, else ``other``."""
        if subject is None:
            return NONE
        return subject if subject in self.subjects else OTHER

    def language_label(self, language: str | None) -> str:
        """A configured language, ``none`` when missing, else ``other``."""
        if language is None:
            return NONE
        return language if language in self.languages else OTHER

    def tag_label(self, tag: str) -> str:
        """A known feedback tag, else ``other``."""
        return tag if tag in self.tags else OTHER

    def _status(self, status: int) -> str:
        text = self._status_text.get(status)
        if text is None:
            text = self._status_text[status] = str(status)
        return text

    # -- the interaction sink ---------------------------------------------
    def record(self, interaction: Interaction) -> None:
        """Count one finished request (the :class:`InteractionSink` method).

        The request's counter, histograms and token counts are tallied and
        reach their metrics at the next collection (:mod:`tara.telemetry.metric_tally`).
        """
        i = interaction
        subject = self.subject_label(i.subject)
        language = self.language_label(i.language)
        key = (i.track, i.variant, subject, language, self._status(i.status))
        requests = self._req_tallies.get(key)
        if requests is None:
            requests = self._req_tallies[key] = CounterTally(self.requests.labels(*key))
        requests.value += 1
        per_variant = self._variant_tallies.get((i.track, i.variant))
        if per_variant is None:
            per_variant = (
                HistogramTally(self.request_duration.labels(i.track, i.variant)),
                HistogramTally(self.ttft.labels(i.track, i.variant)),
                CounterTally(self.tokens.labels(i.track, i.variant, "prompt")),
                CounterTally(self.tokens.labels(i.track, i.variant, "completion")),
            )
            self._variant_tallies[(i.track, i.variant)] = per_variant
        duration, ttft, prompt_tokens, completion_tokens = per_variant
        if i.latency_s is not None:
            duration.observe(i.latency_s)
        if i.ttft_s is not None:
            ttft.observe(i.ttft_s)
        if i.error_class is not None:
            self.request_errors.labels(i.track, i.variant, i.error_class).inc()
        if i.user_retry:
            self.user_retry(i)
        if i.prompt_tokens:
            prompt_tokens.add(i.prompt_tokens)
        if i.completion_tokens:
            completion_tokens.add(i.completion_tokens)

    def _tallies(self) -> Iterator[CounterTally | HistogramTally]:
        return itertools.chain(
            self._req_tallies.values(),
            itertools.chain.from_iterable(self._variant_tallies.values()),
            self._overhead_tallies.values(),
        )

    # -- other events -------------------------------------------------------
    def overhead(self, track: str, variant: str, stream: bool, seconds: float) -> None:
        """What the gateway itself added to one routed request (total minus upstream waits)."""
        key = (track, variant, stream)
        tally = self._overhead_tallies.get(key)
        if tally is None:
            labels = (track, variant, "true" if stream else "false")
            tally = self._overhead_tallies[key] = HistogramTally(
                self.gateway_overhead.labels(*labels)
            )
        tally.observe(seconds)

    def user_retry(self, interaction: Labelled) -> None:
        """The student asked again (a regenerate tap, or the same question detected later)."""
        i = interaction
        self.user_retries.labels(
            i.track, i.variant, self.subject_label(i.subject), self.language_label(i.language)
        ).inc()

    def upstream_retry(self, track: str, variant: str, reason: str) -> None:
        """One upstream attempt failed before the first byte and will be retried."""
        self.upstream_retries.labels(track, variant, reason).inc()

    def fallback(self, track: str, reason: str) -> None:
        """A canary request failed and goes to stable instead."""
        self.fallbacks.labels(track, reason).inc()

    def rejection(self, status: int, route: str) -> None:
        """A request was refused; ``route`` is one of the gateway's fixed route labels."""
        self.rejected.labels(self._status(status), route).inc()

    def feedback(
        self,
        track: str,
        variant: str,
        subject: str | None,
        language: str | None,
        rating: int | None,
        tags: Iterable[str] = (),
    ) -> None:
        """A student's rating and tags for an answer."""
        if rating is not None:
            self.feedback_rating.labels(
                track, variant, self.subject_label(subject), self.language_label(language)
            ).observe(rating)
        for tag in tags:
            self.feedback_tags.labels(track, variant, self.tag_label(tag)).inc()

    def routing_table(self, *, healthy: bool, age_seconds: float, version: int) -> None:
        """The state of the gateway's local routing table copy."""
        self.routing_table_healthy.set(1 if healthy else 0)
        self.routing_table_age.set(age_seconds)
        self.routing_table_version.set(version)

    def dropped(self, reason: str, count: int = 1) -> None:
        """Interaction records lost (a full queue, a refused record, a full spool)."""
        self.interactions_dropped.labels(reason).inc(count)

    def telemetry_drop(self, sink: str, reason: str, count: int = 1) -> None:
        """Window-stats buckets or request-index entries lost (``sink`` says which)."""
        self.telemetry_dropped.labels(sink, reason).inc(count)
