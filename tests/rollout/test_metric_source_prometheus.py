"""The Prometheus metric source: PromQL building, parsing and re-binning as tables."""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from deploy.prometheus_server import (
    PrometheusServer,
    prometheus_fixture,
    require_prometheus,
    running_prometheus,
)
from tara.gateway.app import build_gateway
from tara.gateway.feedback import feedback_route
from tara.rollout.config import RolloutSettings
from tara.rollout.controller_server import controller_parts
from tara.rollout.metric_source import WindowMetricSource
from tara.rollout.metric_source_prometheus import (
    RATING_BOUNDS,
    PrometheusMetricSource,
    PrometheusSourceError,
    Sample,
    apportion,
    build_queries,
    growth,
    parse_vector,
    rebin,
    selector,
    variant_stats,
    window_seconds,
)
from tara.rollout.model import Rollout
from tara.rollout.plan import plan_from_settings
from tara.rollout.routing import CanaryRoute, RoutingTable, Segment, TrackRoute
from tara.rollout.routing_store_memory import MemoryRoutingStore
from tara.sandbox import default_config, running_sandbox, zero_latency
from tara.serving import free_port, running_server
from tara.settings import Settings
from tara.state import open_state
from tara.telemetry.metrics import LATENCY_BUCKETS, MetricsRecorder
from tara.telemetry.pipeline import Telemetry
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats, latency_bucket

INF = math.inf
PLAN = plan_from_settings(RolloutSettings())
__all__ = ["prometheus_fixture"]  # the fixture, imported to be found


# -- PromQL -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        (None, 'm{track="tara-tutor"}'),
        (Segment(), 'm{track="tara-tutor"}'),
        (Segment("math"), 'm{track="tara-tutor",subject="math"}'),
        (Segment(language="ta"), 'm{track="tara-tutor",language="ta"}'),
        (Segment("math", "hi"), 'm{track="tara-tutor",subject="math",language="hi"}'),
    ],
)
def test_selector(segment: Segment | None, expected: str) -> None:
    assert selector("m", "tara-tutor", segment) == expected


def test_selector_escapes_label_values() -> None:
    expr = selector("m", 'odd"track\\')
    assert expr == 'm{track="odd\\"track\\\\"}'
    promql_parser.parse(expr)


def test_growth_is_exact_difference_with_increase_as_fallback() -> None:
    assert growth("x", 90) == (
        "(((x - (x offset 90s or x * 0)) unless (resets(x[90s]) > 0)) or increase(x[90s]))"
    )


@pytest.mark.parametrize(
    ("t0", "t1", "seconds"), [(0, 60, 60), (0.0, 60.2, 61), (5, 5, 1), (10, 9, 1)]
)
def test_window_seconds(t0: float, t1: float, seconds: int) -> None:
    assert window_seconds(t0, t1) == seconds


@pytest.mark.parametrize("segment", [Segment(), Segment("math"), Segment("math", "hi")])
def test_every_query_parses(segment: Segment) -> None:
    for expr in build_queries("tara-tutor", segment, 3600).values():
        promql_parser.parse(expr)


def test_segment_filter_only_where_the_metric_has_the_labels() -> None:
    queries = build_queries("tara-tutor", Segment("math", "hi"), 60)
    narrowed = {name for name, q in queries.items() if 'subject="math"' in q}
    assert narrowed == {"requests", "ratings", "user_retries"}
    assert all('language="hi"' in queries[name] for name in narrowed)
    assert 'subject="math"' not in queries["track_requests"]


def test_a_track_wide_rollout_needs_no_track_requests() -> None:
    queries = build_queries("tara-tutor", Segment(), 60)
    assert "track_requests" not in queries
    assert not any("subject=" in q or "language=" in q for q in queries.values())
    assert all(q.startswith("sum by (variant") for q in queries.values())


# -- parsing ------------------------------------------------------------------
def _ok(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    result = [{"metric": labels, "value": [1.0, value]} for labels, value in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_parse_vector() -> None:
    body = _ok(({"variant": "canary"}, "3"), ({"variant": "stable"}, "0.5"))
    assert parse_vector(body, "q") == [({"variant": "canary"}, 3.0), ({"variant": "stable"}, 0.5)]
    assert parse_vector(_ok(), "q") == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "parse error"),
        ("<html>", "refused"),
        ({**_ok(), "warnings": ["partial response"]}, "partially"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "instant vector"),
        ({"status": "success"}, "instant vector"),
        (_ok(({"variant": "canary"}, "NaN")), "growth of nan"),
        (_ok(({"variant": "canary"}, "+Inf")), "growth of inf"),
        (_ok(({"variant": "canary"}, "-2")), "growth of -2"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{}]}}, "malformed"),
        (_ok(({"variant": "canary"}, "many")), "malformed"),
    ],
)
def test_parse_vector_refuses_what_cannot_be_trusted(body: Any, words: str) -> None:
    with pytest.raises(PrometheusSourceError, match=words):
        parse_vector(body, "q")


# -- numbers ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weights", "total", "expected"),
    [
        ([1, 1, 1], 3, [1, 1, 1]),
        ([1, 1, 1], 2, [1, 1, 0]),
        ([2, 1], 10, [7, 3]),
        ([0.5, 0.25, 0.25], 4, [2, 1, 1]),
        ([1, 0], 5, [5, 0]),
        ([0, 0], 5, [0, 0]),
        ([1, 2], 0, [0, 0]),
        ([], 3, []),
    ],
)
def test_apportion(weights: list[float], total: int, expected: list[int]) -> None:
    assert apportion(weights, total) == expected


def _hist(**at: int) -> list[int]:
    out = [0] * (len(LATENCY_BOUNDS) + 1)
    for index, n in at.items():
        out[int(index.removeprefix("i"))] += n
    return out


@pytest.mark.parametrize(
    ("cumulative", "expected"),
    [
        ({}, _hist()),
        ({0.005: 4, INF: 4}, _hist(i0=4)),  # same first bound: one to one
        # (5, 10] ms covers 1.25, 1.56, 1.95 and 0.23 ms of buckets 1-4: 1, 1.25, 1.56, 0.19
        ({0.005: 0, 0.01: 4, INF: 4}, _hist(i1=1, i2=1, i3=2)),
        ({300.0: 0, INF: 3}, _hist(i50=3)),  # above every bound: overflow
        # (120, 300] s: 23.5, 35.9, 44.8, 56.1 and 19.7 s of buckets 46-50 (of 180 s)
        ({120.0: 0, 300.0: 6, INF: 6}, _hist(i46=1, i47=1, i48=1, i49=2, i50=1)),
        # a bucket below the one before it (an extrapolated increase) adds nothing
        ({1.0: 5, 2.0: 3, INF: 5}, _hist(i20=1, i21=1, i22=1, i23=1, i24=1)),
        ({0.01: 0, INF: 2}, _hist(i4=2)),  # above the highest finite le: the next bucket
    ],
)
def test_rebin_table(cumulative: Mapping[float, float], expected: list[int]) -> None:
    assert rebin(cumulative) == expected


def test_rebin_keeps_totals_and_puts_counts_inside_their_prometheus_bucket() -> None:
    counts = [3, 0, 7, 1, 0, 2, 9, 4, 4, 1, 0, 5, 1, 0, 2, 1, 0, 0, 3, 1, 0, 2, 6]
    cum, total = {}, 0
    for le, n in zip((*LATENCY_BUCKETS, INF), counts, strict=True):
        total += n
        cum[le] = float(total)
    assert sum(rebin(cum)) == total


@pytest.mark.parametrize(
    ("lower", "upper"), list(zip((0.0, *LATENCY_BUCKETS), LATENCY_BUCKETS, strict=False))
)
def test_rebin_spreads_a_bucket_only_over_the_buckets_it_overlaps(
    lower: float, upper: float
) -> None:
    out = rebin({lower: 0.0, upper: 1000.0, INF: 1000.0} if lower else {upper: 1000.0})
    first, last = bisect.bisect_right(LATENCY_BOUNDS, lower), latency_bucket(upper)
    assert sum(out[first : last + 1]) == sum(out) == 1000
    assert all(out[first : last + 1])


@pytest.mark.parametrize(
    ("cumulative", "ratings"),
    [
        ({}, [0, 0, 0, 0, 0]),
        ({1.0: 1, 2.0: 1, 3.0: 4, 4.0: 9, 5.0: 10, INF: 10}, [1, 0, 3, 5, 1]),
        ({1.0: 0, 2.0: 0, 3.0: 0, 4.0: 0, 5.0: 2, INF: 2}, [0, 0, 0, 0, 2]),
    ],
)
def test_ratings_from_cumulative_buckets(
    cumulative: Mapping[float, float], ratings: list[int]
) -> None:
    assert rebin(cumulative, RATING_BOUNDS)[:5] == ratings


# -- assembling stats ---------------------------------------------------------
def _s(value: float, **labels: str) -> Sample:
    return (labels, value)


def _answers(**overrides: Sequence[Sample]) -> dict[str, Sequence[Sample]]:
    answers: dict[str, Sequence[Sample]] = {
        "requests": [
            _s(90, variant="canary", status="200"),
            _s(10, variant="canary", status="502"),
            _s(400, variant="stable", status="200"),
        ],
        "errors": [
            _s(6, variant="canary", error_class="upstream"),
            _s(4, variant="canary", error_class="timeout"),
            _s(3, variant="canary", error_class="connection"),
        ],
        "latency": [
            _s(1, variant="canary", le="0.005"),
            _s(5, variant="canary", le="0.01"),
            _s(100, variant="canary", le="+Inf"),
            _s(400, variant="stable", le="0.005"),
            _s(400, variant="stable", le="+Inf"),
        ],
        "latency_sum": [_s(12.5, variant="canary"), _s(1.0, variant="stable")],
        "ttft": [_s(50, variant="canary", le="0.01"), _s(50, variant="canary", le="+Inf")],
        "ratings": [
            _s(c, variant="canary", le=le)
            for le, c in (("1.0", 1), ("2.0", 3), ("3.0", 3), ("4.0", 8), ("5.0", 9), ("+Inf", 9))
        ],
        "tags": [_s(4, variant="canary", tag="cultural"), _s(2, variant="stable", tag="wrong")],
        "user_retries": [_s(7, variant="canary"), _s(2, variant="stable")],
        "tokens": [
            _s(1000, variant="canary", kind="prompt"),
            _s(3000, variant="canary", kind="completion"),
        ],
    }
    answers.update(overrides)
    return answers


def test_track_wide_stats_are_the_counters() -> None:
    canary = variant_stats(_answers(), "canary")
    assert canary.requests == 100
    assert canary.errors == {"upstream": 6, "timeout": 4, "connection": 3}
    assert sum(canary.latency) == 100
    assert canary.latency[:5] == [1, 1, 1, 2, 95]  # 4 in (5, 10] ms, 95 above 10 ms
    assert canary.latency_sum == 12.5
    assert canary.ttft[:5] == [25, 6, 8, 10, 1]
    assert sum(canary.ttft) == 50
    assert canary.ratings == [1, 2, 0, 5, 1]
    assert canary.tags == {"cultural": 4}
    assert (canary.user_retries, canary.prompt_tokens, canary.completion_tokens) == (7, 1000, 3000)
    stable = variant_stats(_answers(), "stable")
    assert (stable.requests, stable.errors, stable.latency[0], stable.ratings) == (
        400,
        {},
        400,
        [0] * 5,
    )


def test_no_data_is_zero_stats() -> None:
    empty = {name: [] for name in _answers()}
    stats = variant_stats(empty, "canary")
    assert (stats.requests, stats.error_count, sum(stats.latency), stats.rating_count) == (
        0,
        0,
        0,
        0,
    )


def test_segment_scoped_errors_are_5xx_plus_a_share_of_broken_streams() -> None:
    # The track's canary: 200 requests, 20 of them 502; 26 errors, so 6 streams broke after 200.
    track = [
        _s(180, variant="canary", status="200"),
        _s(20, variant="canary", status="502"),
        _s(1000, variant="stable", status="200"),
    ]
    answers = _answers(
        track_requests=track,
        errors=[
            _s(13, variant="canary", error_class="upstream"),
            _s(13, variant="canary", error_class="timeout"),
        ],
    )
    canary = variant_stats(answers, "canary")
    # Half the canary's requests are the segment's: its 10 502s plus half the 6 broken streams.
    assert canary.requests == 100
    assert canary.error_count == 13
    assert canary.errors == {"timeout": 7, "upstream": 6}  # a tie: the first name wins
    assert (canary.prompt_tokens, canary.completion_tokens) == (500, 1500)
    assert canary.tags == {"cultural": 2}
    stable = variant_stats(answers, "stable")
    assert (stable.requests, stable.error_count, stable.tags) == (400, 0, {"wrong": 1})


def test_segment_errors_never_exceed_its_requests_and_default_to_upstream() -> None:
    answers = _answers(
        requests=[_s(3, variant="canary", status="503")],
        track_requests=[
            _s(3, variant="canary", status="503"),
            _s(1, variant="canary", status="200"),
        ],
        errors=[],
    )
    assert variant_stats(answers, "canary").errors == {"upstream": 3}
    answers["errors"] = [_s(50, variant="canary", error_class="timeout")]
    assert variant_stats(answers, "canary").errors == {"timeout": 3}


def test_segment_without_track_traffic_has_no_share() -> None:
    answers = _answers(requests=[], track_requests=[])
    canary = variant_stats(answers, "canary")
    assert (canary.requests, canary.error_count, canary.prompt_tokens, canary.tags) == (0, 0, 0, {})


# -- the source and its wiring ------------------------------------------------
async def test_an_unreachable_prometheus_raises() -> None:
    source = PrometheusMetricSource(f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(PrometheusSourceError, match="unreachable"):
            await source.query("up", 0.0)
    finally:
        await source.aclose()
    await source.aclose()  # twice is fine


async def test_controller_parts_pick_the_source_from_settings() -> None:
    async with controller_parts(Settings(), CollectorRegistry()) as parts:
        assert isinstance(parts.source, WindowMetricSource)
    settings = Settings(
        rollout={"metric_source": "prometheus", "prometheus_url": "http://127.0.0.1:9/"}
    )
    async with controller_parts(settings, CollectorRegistry()) as parts:
        assert isinstance(parts.source, PrometheusMetricSource)
        assert parts.source.url == "http://127.0.0.1:9/api/v1/query"


# -- against the real Prometheus scraping a real gateway ------------------------
CLIENT_KEY = "sk-prom-client"
UPSTREAM_KEY = "sk-prom-upstream"
TRACK = "tara-tutor"
STUDENTS = [
    (f"student-{i:02d}", ("math", "physics")[i % 2], ("hi", "en")[i % 3 % 2]) for i in range(24)
]


@dataclass
class Sent:
    """What the test's students did, per variant."""

    requests: Counter[str] = field(default_factory=Counter)
    math_requests: Counter[str] = field(default_factory=Counter)
    streamed: Counter[str] = field(default_factory=Counter)
    ratings: dict[str, list[int]] = field(default_factory=dict)
    math_ratings: dict[str, list[int]] = field(default_factory=dict)
    tags: dict[str, Counter[str]] = field(default_factory=dict)


def _rollout(segment: Segment) -> Rollout:
    return Rollout("r1", TRACK, segment, "tara-stable", "tara-candidate-good", "salt-1", PLAN)


async def _traffic(base: str, sent: Sent) -> None:
    """Every student asks twice (streamed or not) and rates each answer 1-5 by a fixed rule."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as client:
        for n, (student, subject, language) in enumerate(STUDENTS * 2):
            stream = n % 3 == 0
            headers = {
                "X-Tara-User": student,
                "X-Tara-Subject": subject,
                "X-Tara-Language": language,
            }
            body = {
                "model": TRACK,
                "messages": [{"role": "user", "content": "7 x 8?"}],
                "stream": stream,
            }
            async with client.stream(
                "POST", f"{base}/v1/chat/completions", json=body, headers=headers
            ) as r:
                await r.aread()
            assert r.status_code == 200
            variant = r.headers["x-tara-variant"]
            sent.requests[variant] += 1
            sent.math_requests[variant] += subject == "math"
            sent.streamed[variant] += stream
            if n % 4 == 3:
                continue  # not every answer is rated
            rating, tags = 1 + n % 5, ["cultural"] if n % 7 == 0 else []
            feedback = {
                "request_id": r.headers["x-tara-request-id"],
                "rating": rating,
                "tags": tags,
            }
            assert (await client.post(f"{base}/v1/feedback", json=feedback)).status_code == 200
            counts = sent.ratings.setdefault(variant, [0] * 5)
            counts[rating - 1] += 1
            if subject == "math":
                sent.math_ratings.setdefault(variant, [0] * 5)[rating - 1] += 1
            sent.tags.setdefault(variant, Counter()).update(tags)


@pytest.mark.integration
async def test_read_matches_what_a_real_prometheus_scraped_from_a_real_gateway(
    prometheus: Callable[[Sequence[str]], PrometheusServer], tmp_path: Path
) -> None:
    port = free_port()
    server = prometheus([f"127.0.0.1:{port}"])
    sandbox = zero_latency(default_config()).model_copy(update={"api_keys": [UPSTREAM_KEY]})
    async with running_sandbox(sandbox, seed=3) as upstream:
        settings = Settings(
            upstream={"base_url": upstream, "api_key": UPSTREAM_KEY},
            auth={"client_keys": [CLIENT_KEY]},
            database_url=f"sqlite:///{tmp_path / 'log.db'}",
            routing_refresh_seconds=0.05,
        )
        registry = CollectorRegistry()
        metrics = MetricsRecorder.on(registry, settings.subjects, settings.languages)
        telemetry = Telemetry(settings, metrics, open_state(settings))
        store = MemoryRoutingStore()
        canary = CanaryRoute("r1", Segment("math"), "tara-candidate-good", "salt-1", 5000)
        assert await store.save_table(
            RoutingTable(1, {TRACK: TrackRoute("tara-stable", (canary,))}), 0
        )
        gateway = build_gateway(
            settings,
            routing_store=store,
            sinks=telemetry.sinks,
            registry=registry,
            routes=[feedback_route(telemetry)],
            services=[telemetry],
        )
        async with running_server(gateway, port=port) as base:
            await server.wait_for_async('up{job="tara-gateway"} == 1', lambda r: len(r) == 1)
            t0 = time.time()
            sent = Sent()
            await _traffic(base, sent)
            total, rated = sum(sent.requests.values()), sum(sum(c) for c in sent.ratings.values())
            # Wait until a scrape has seen the last request and the last rating.
            await server.wait_for_async(
                "sum(tara_requests_total) + sum(tara_feedback_rating_count)",
                lambda r: bool(r) and float(r[0]["value"][1]) == total + rated,
            )
            t1 = time.time()
    assert set(sent.requests) == {"canary", "stable"}, sent  # both variants saw traffic
    source = PrometheusMetricSource(server.url, timeout=5)
    try:
        canary_all, stable_all = await source.read(_rollout(Segment()), t0, t1)
        canary_math, stable_math = await source.read(_rollout(Segment("math")), t0, t1)
        # Before the traffic there was nothing: zero stats, not an error.
        before = await source.read(_rollout(Segment()), t0 - 60, t0 - 30)
    finally:
        await source.aclose()
    for variant, stats in (("canary", canary_all), ("stable", stable_all)):
        assert stats.requests == sent.requests[variant]
        assert stats.errors == {}
        assert stats.ratings == sent.ratings.get(variant, [0] * 5)
        assert stats.tags == {k: v for k, v in sent.tags.get(variant, Counter()).items() if v}
        assert sum(stats.latency) == sent.requests[variant]
        assert sum(stats.ttft) == sent.streamed[variant]
        assert stats.latency_sum > 0
        assert stats.completion_tokens > 0
    # The segment: requests and ratings are the math students'; the canary only serves them.
    assert canary_math.requests == sent.math_requests["canary"] == sent.requests["canary"]
    assert stable_math.requests == sent.math_requests["stable"] < sent.requests["stable"]
    assert canary_math.ratings == sent.math_ratings.get("canary", [0] * 5)
    assert stable_math.ratings == sent.math_ratings.get("stable", [0] * 5)
    assert sum(stable_math.latency) == sent.requests["stable"]  # latency is the whole track's
    share = sent.math_requests["stable"] / sent.requests["stable"]
    assert stable_math.completion_tokens == round(stable_all.completion_tokens * share)
    assert before == (WindowStats(), WindowStats())


@pytest.mark.integration
async def test_a_prometheus_outage_raises() -> None:
    require_prometheus()
    async with aiohttp.ClientSession() as session:  # the caller's session: the source keeps it
        with running_prometheus() as server:
            source = PrometheusMetricSource(server.url, timeout=5, session=session)
            answer = await source.query("vector(1)", time.time())
            assert answer == [({}, 1.0)]  # it answers while it runs
            with pytest.raises(PrometheusSourceError, match="parse error"):
                await source.query("sum by (", time.time())
        with pytest.raises(PrometheusSourceError, match="unreachable"):
            await source.read(_rollout(Segment()), time.time() - 60, time.time())
        await source.aclose()
        assert not session.closed
