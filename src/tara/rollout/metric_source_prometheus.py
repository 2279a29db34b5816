"""A :class:`~tara.rollout.metric_source.MetricSource` that asks Prometheus (PromQL over HTTP).

The controller's other source, for deployments where Prometheus already
scrapes every gateway replica. One read is a handful of instant queries
(``/api/v1/query`` evaluated at ``t1``), each summed ``by (variant, ...)`` so
one answer serves canary and stable, turned into two :class:`WindowStats`.

Counter growth over ``[t0, t1]`` is taken per series as ``x - x offset W``
(a series born inside the window counts from 0), which is exact; only a
series that reset (a replica restarted) or vanished before ``t1`` falls back
to ``increase(x[W])``, which Prometheus extrapolates to the window's edges.

What differs from the gateway's own window stats (and why it is still fit
for the rollout checks):

* Time is scrape time, not request time: the edges blur by a scrape interval
  plus a request's duration, and feedback counts when it arrives rather than
  in the window of the request it rates. A replaced rating counts twice
  (the histogram cannot take the old one back).
* ``tara_request_duration_seconds`` and TTFT observe failed requests too;
  window stats keep latency for answers only. Relevance is not exported, so
  it stays empty.
* Latency and TTFT are re-binned from the Prometheus buckets into
  :data:`~tara.telemetry.windows.LATENCY_BOUNDS`, spread uniformly within
  each Prometheus bucket (``histogram_quantile``'s assumption), so a quantile
  is only as sharp as the coarser layout (e.g. anything in 1.5-2 s).
* A segment-scoped rollout filters on the ``subject``/``language`` labels
  where a metric has them (requests, ratings, user retries). Latency, TTFT,
  error classes, tags and tokens carry only ``track`` and ``variant``:
  latency and TTFT are the whole track's distribution; errors are the
  segment's 5xx answers plus its request share of the track's other errors
  (streams broken after their 200), split by the track's error classes;
  tags and tokens are the track's, scaled by that same request share.
  A subject or language outside ``Settings.subjects``/``languages`` is
  exported as ``other``, so a rollout on it reads nothing (inconclusive).

An HTTP failure, a PromQL error, a warning (a partial answer) or a malformed
value raises :class:`PrometheusSourceError`: the controller makes that an
``ERROR`` look, never a rollback. No data at all is zero stats (inconclusive).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from tara.rollout.metric_source import CANARY, STABLE
from tara.rollout.model import Rollout
from tara.rollout.routing import Segment
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats

RATING_BOUNDS = (1.0, 2.0, 3.0, 4.0, 5.0)
"""``tara_feedback_rating``'s buckets: one per rating."""

Sample = tuple[dict[str, str], float]
"""One element of an instant vector: its labels and its value."""


class PrometheusSourceError(RuntimeError):
    """Prometheus could not be asked, or its answer cannot be trusted."""


# -- PromQL -------------------------------------------------------------------
def _quote(value: str) -> str:
    # A JSON string is a valid PromQL (Go) string literal, escapes included.
    return json.dumps(value)


def selector(metric: str, track: str, segment: Segment | None = None) -> str:
    """``metric{track="..."}``, plus subject/language matchers when ``segment`` narrows it."""
    matchers = [f"track={_quote(track)}"]
    if segment is not None and segment.subject is not None:
        matchers.append(f"subject={_quote(segment.subject)}")
    if segment is not None and segment.language is not None:
        matchers.append(f"language={_quote(segment.language)}")
    return f"{metric}{{{','.join(matchers)}}}"


def growth(series: str, seconds: int) -> str:
    """Per-series growth of counter ``series`` over the last ``seconds`` (see the module doc)."""
    w = f"{seconds}s"
    exact = f"({series} - ({series} offset {w} or {series} * 0))"
    return f"(({exact} unless (resets({series}[{w}]) > 0)) or increase({series}[{w}]))"


def window_seconds(t0: float, t1: float) -> int:
    """The range of ``[t0, t1]`` in whole seconds (at least one)."""
    return max(1, math.ceil(t1 - t0))


def build_queries(track: str, segment: Segment, seconds: int) -> dict[str, str]:
    """Every query of one read, by name; ``track_requests`` only for a segment-scoped rollout."""
    scoped = segment if segment.subject or segment.language else None

    def summed(by: str, metric: str, narrow: bool = False) -> str:
        series = selector(metric, track, scoped if narrow else None)
        return f"sum by ({by}) ({growth(series, seconds)})"

    queries = {
        "requests": summed("variant, status", "tara_requests_total", narrow=True),
        "errors": summed("variant, error_class", "tara_request_errors_total"),
        "latency": summed("variant, le", "tara_request_duration_seconds_bucket"),
        "latency_sum": summed("variant", "tara_request_duration_seconds_sum"),
        "ttft": summed("variant, le", "tara_time_to_first_token_seconds_bucket"),
        "ratings": summed("variant, le", "tara_feedback_rating_bucket", narrow=True),
        "tags": summed("variant, tag", "tara_feedback_tags_total"),
        "user_retries": summed("variant", "tara_user_retries_total", narrow=True),
        "tokens": summed("variant, kind", "tara_tokens_total"),
    }
    if scoped is not None:
        queries["track_requests"] = summed("variant, status", "tara_requests_total")
    return queries


def parse_vector(body: Any, expr: str) -> list[Sample]:
    """The samples of an ``/api/v1/query`` answer; raise on an error, warning or bad value."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        msg = f"prometheus refused {expr!r}: {error}"
        raise PrometheusSourceError(msg)
    if body.get("warnings"):
        msg = f"prometheus answered {expr!r} only partially: {body['warnings']}"
        raise PrometheusSourceError(msg)
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        msg = f"prometheus answered {expr!r} with no instant vector: {data!r:.200}"
        raise PrometheusSourceError(msg)
    samples: list[Sample] = []
    for item in data.get("result") or ():
        try:
            labels, value = dict(item["metric"]), float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            msg = f"prometheus answered {expr!r} with a malformed sample {item!r:.200}"
            raise PrometheusSourceError(msg) from exc
        if not math.isfinite(value) or value < 0:
            msg = f"prometheus answered {expr!r} with a counter growth of {value}: {labels}"
            raise PrometheusSourceError(msg)
        samples.append((labels, value))
    return samples


# -- numbers ------------------------------------------------------------------
def apportion(weights: Sequence[float], total: int) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    mass = sum(weights)
    if total <= 0 or mass <= 0:
        return [0] * len(weights)
    exact = [total * w / mass for w in weights]
    out = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: out[i] - exact[i])
    for i in by_remainder[: total - sum(out)]:
        out[i] += 1
    return out


def rebin(cumulative: Mapping[float, float], bounds: Sequence[float] = LATENCY_BOUNDS) -> list[int]:
    """Prometheus cumulative buckets ``{le: count}`` as counts per bucket of ``bounds``.

    The result has ``len(bounds) + 1`` buckets (the last one above every
    bound). Each Prometheus bucket's count is spread uniformly over the part
    of ``(previous le, le]`` each target bucket covers; what lies above the
    highest finite ``le`` goes to the bucket just above it. Totals are kept.
    """
    out = [0] * (len(bounds) + 1)
    lower, below = 0.0, 0
    for le in sorted(cumulative):
        cum = round(cumulative[le])
        n, below = max(0, cum - below), max(below, cum)
        if n and math.isinf(le):
            out[bisect.bisect_right(bounds, lower)] += n
        elif n:
            edges = [0.0, *bounds, math.inf]
            first = bisect.bisect_right(bounds, lower)
            last = bisect.bisect_left(bounds, le)
            spans = [min(le, edges[i + 1]) - max(lower, edges[i]) for i in range(first, last + 1)]
            for i, count in zip(range(first, last + 1), apportion(spans, n), strict=True):
                out[i] += count
        lower = le
    return out


def _by(samples: Sequence[Sample], label: str) -> dict[str, dict[str, float]]:
    """``{variant: {label value: value}}``."""
    out: dict[str, dict[str, float]] = {}
    for labels, value in samples:
        inner = out.setdefault(labels.get("variant", ""), {})
        key = labels.get(label, "")
        inner[key] = inner.get(key, 0.0) + value
    return out


def _requests(samples: Sequence[Sample], variant: str) -> tuple[int, int]:
    """(all requests, 5xx answers) of ``variant``."""
    statuses = _by(samples, "status").get(variant, {})
    return round(sum(statuses.values())), round(
        sum(v for s, v in statuses.items() if s.startswith("5"))
    )


def _total(samples: Sequence[Sample], variant: str) -> float:
    return sum(value for labels, value in samples if labels.get("variant") == variant)


def _buckets(samples: Sequence[Sample], variant: str) -> dict[float, float]:
    return {float(le): v for le, v in _by(samples, "le").get(variant, {}).items()}


def _scaled(counts: Mapping[str, float], share: float) -> dict[str, int]:
    scaled = {k: round(v * share) for k, v in counts.items()}
    return {k: v for k, v in scaled.items() if v}


def variant_stats(answers: Mapping[str, Sequence[Sample]], variant: str) -> WindowStats:
    """One variant's stats from the answers to :func:`build_queries`' queries."""
    requests, fails = _requests(answers["requests"], variant)
    classes = _by(answers["errors"], "error_class").get(variant, {})
    share = 1.0
    if "track_requests" in answers:
        track_requests, track_fails = _requests(answers["track_requests"], variant)
        share = requests / track_requests if track_requests else 0.0
        broken = max(0.0, sum(classes.values()) - track_fails)  # errors after a 200
        estimate = min(requests, fails + round(share * broken))
        names = sorted(classes) or ["upstream"]
        counts = apportion([classes.get(n, 1.0) for n in names], estimate)
        errors = {n: c for n, c in zip(names, counts, strict=True) if c}
    else:
        errors = _scaled(classes, 1.0)
    tokens = _scaled(_by(answers["tokens"], "kind").get(variant, {}), share)
    return WindowStats(
        requests=requests,
        errors=errors,
        latency=rebin(_buckets(answers["latency"], variant)),
        latency_sum=_total(answers["latency_sum"], variant),
        ttft=rebin(_buckets(answers["ttft"], variant)),
        ratings=rebin(_buckets(answers["ratings"], variant), RATING_BOUNDS)[: len(RATING_BOUNDS)],
        tags=_scaled(_by(answers["tags"], "tag").get(variant, {}), share),
        user_retries=round(_total(answers["user_retries"], variant)),
        prompt_tokens=tokens.get("prompt", 0),
        completion_tokens=tokens.get("completion", 0),
    )


# -- the source ---------------------------------------------------------------
class PrometheusMetricSource:
    """A :class:`~tara.rollout.metric_source.MetricSource` over a Prometheus HTTP API."""

    def __init__(
        self, base_url: str, timeout: float = 10.0, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/api/v1/query"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    async def read(self, rollout: Rollout, t0: float, t1: float) -> tuple[WindowStats, WindowStats]:
        """``(canary, stable)`` of the rollout's track and segment over ``[t0, t1]``."""
        queries = build_queries(rollout.track, rollout.segment, window_seconds(t0, t1))
        results = await asyncio.gather(*(self.query(expr, t1) for expr in queries.values()))
        answers = dict(zip(queries, results, strict=True))
        return variant_stats(answers, CANARY), variant_stats(answers, STABLE)

    async def query(self, expr: str, at: float) -> list[Sample]:
        """Evaluate ``expr`` at time ``at`` (epoch seconds)."""
        form = {"query": expr, "time": f"{at:.3f}"}
        try:
            async with self._client().post(self.url, data=form, timeout=self._timeout) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            msg = f"prometheus at {self.url} unreachable: {type(exc).__name__}: {exc}"
            raise PrometheusSourceError(msg) from exc
        try:
            body = json.loads(text)
        except ValueError as exc:
            msg = f"prometheus answered HTTP {response.status} without JSON: {text[:200]!r}"
            raise PrometheusSourceError(msg) from exc
        return parse_vector(body, expr)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def aclose(self) -> None:
        """Close the HTTP session if this source opened it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
