"""Tallied metrics expose exactly what direct Prometheus updates would."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from tara.telemetry.interactions import Interaction
from tara.telemetry.metric_tally import CounterTally, Folder, HistogramTally
from tara.telemetry.metrics import MetricsRecorder

AMOUNTS = (0.0, 0.004, 0.005, 0.0051, 0.12, 1.0, 299.0, 300.0, 301.0, 1e9)
"""Below, on and above bounds, and past the last one (+Inf)."""


def _without_created(exposition: bytes) -> list[str]:
    """The exposition's lines but the creation times, sorted (children appear in the order
    they were first labelled)."""
    return sorted(line for line in exposition.decode().splitlines() if "_created" not in line)


def _interaction(n: int) -> Interaction:
    return Interaction(
        request_id=f"r{n}",
        created_at=1.0,
        track="tara-tutor",
        segment="math:hi",
        variant="canary" if n % 3 else "stable",
        model="m",
        student_hash=None,
        subject="math" if n % 2 else None,
        language="hi",
        grade=None,
        status=200 if n % 4 else 502,
        latency_s=AMOUNTS[n % len(AMOUNTS)],
        ttft_s=None if n % 5 == 0 else AMOUNTS[(n + 3) % len(AMOUNTS)],
        prompt_tokens=n,
        completion_tokens=2 * n,
    )


def test_a_histogram_tally_folds_into_what_observe_gives() -> None:
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    tallies: list[HistogramTally] = []
    Folder(tallied, lambda: tallies)  # before the metric, so a collection folds first
    tally = HistogramTally(
        Histogram("h", "doc", ["a"], buckets=(0.005, 1.0, 300.0), registry=tallied).labels("x")
    )
    tallies.append(tally)
    plain = Histogram("h", "doc", ["a"], buckets=(0.005, 1.0, 300.0), registry=direct).labels("x")
    for amount in AMOUNTS:
        plain.observe(amount)
        tally.observe(amount)
    assert _without_created(generate_latest(tallied)) == _without_created(generate_latest(direct))
    # A second collection adds nothing twice.
    assert tallied.get_sample_value("h_count", {"a": "x"}) == len(AMOUNTS)
    tally.observe(2.0)
    assert tallied.get_sample_value("h_count", {"a": "x"}) == len(AMOUNTS) + 1
    assert tallied.get_sample_value("h_bucket", {"a": "x", "le": "300.0"}) == len(AMOUNTS) - 1


def test_a_counter_tally_refuses_to_go_down() -> None:
    registry = CollectorRegistry()
    tallies: list[CounterTally] = []
    Folder(registry, lambda: tallies)
    tally = CounterTally(Counter("c", "doc", registry=registry))
    tallies.append(tally)
    tally.add(2)
    with pytest.raises(ValueError, match="only go up"):
        tally.add(-1)
    assert registry.get_sample_value("c_total") == 2


def test_the_recorder_exposes_what_direct_updates_would() -> None:
    """The recorder's tallied metrics against the same events as plain Prometheus calls."""
    tallied = MetricsRecorder(CollectorRegistry(), subjects=["math"], languages=["hi"])
    direct = MetricsRecorder(CollectorRegistry(), subjects=["math"], languages=["hi"])
    for n in range(40):
        ix = _interaction(n)
        tallied.record(ix)
        tallied.overhead(ix.track, ix.variant, n % 2 == 0, n / 1000)
        subject, language = direct.subject_label(ix.subject), direct.language_label(ix.language)
        direct.requests.labels(ix.track, ix.variant, subject, language, str(ix.status)).inc()
        assert ix.latency_s is not None
        direct.request_duration.labels(ix.track, ix.variant).observe(ix.latency_s)
        if ix.ttft_s is not None:
            direct.ttft.labels(ix.track, ix.variant).observe(ix.ttft_s)
        if ix.prompt_tokens:
            direct.tokens.labels(ix.track, ix.variant, "prompt").inc(ix.prompt_tokens)
        direct.tokens.labels(ix.track, ix.variant, "completion").inc(ix.completion_tokens or 0)
        stream = "true" if n % 2 == 0 else "false"
        direct.gateway_overhead.labels(ix.track, ix.variant, stream).observe(n / 1000)
    assert _without_created(generate_latest(tallied.registry)) == _without_created(
        generate_latest(direct.registry)
    )
    count = tallied.registry.get_sample_value(
        "tara_request_duration_seconds_count", {"track": "tara-tutor", "variant": "stable"}
    )
    assert count == 14
    assert math.isclose(
        tallied.registry.get_sample_value(
            "tara_tokens_total", {"track": "tara-tutor", "variant": "stable", "kind": "prompt"}
        )
        or 0.0,
        sum(n for n in range(40) if n % 3 == 0),
    )
