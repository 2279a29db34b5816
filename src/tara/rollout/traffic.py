"""Synthetic traffic for the simulator: window stats drawn from per-variant distributions.

A :class:`VariantProfile` says how a model behaves (error rate, lognormal
latency, rating distribution, rating and complaint rates). :class:`LookSampler`
turns it, a request rate and a look's length into the counters one analysis
interval adds to :class:`~tara.telemetry.windows.WindowStats`.

Counts are Poisson: with Poisson traffic every counter (errors, each latency
bucket, each rating level) is an independent Poisson draw, so a look costs a
few dozen draws however many requests it holds. Ratings are thinned from
answers on average rather than per request, which is also how they arrive in
production (late, and not always for the window's own requests).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

from tara.rollout.report import CULTURAL_TAG
from tara.telemetry.windows import LATENCY_BOUNDS, WindowStats

_TINY = 0.25
"""Buckets expected to receive fewer counts than this per look are drawn as one group."""


@dataclass(frozen=True, slots=True)
class VariantProfile:
    """How one model behaves, per request."""

    error_rate: float = 0.01
    latency_median: float = 2.0
    """Seconds; latency is lognormal around this."""
    latency_sigma: float = 0.5
    """Log-scale spread; p95 is ``median * exp(1.645 * sigma)``."""
    rating_mean: float = 4.0
    rating_spread: float = 1.0
    """Spread of the latent normal that is rounded into ratings 1..5."""
    rating_rate: float = 0.3
    """Share of answers that get rated."""
    cultural_rate: float = 0.004
    """Cultural-appropriateness complaints per answer."""
    retry_rate: float = 0.05
    """User retries per request."""
    tokens_per_answer: float = 250.0
    ttft_fraction: float = 0.25
    """Time to first token as a share of latency."""


def rating_distribution(mean: float, spread: float) -> list[float]:
    """Probabilities of ratings 1..5 from a rounded normal whose mean is ``mean``."""
    if not 1.0 <= mean <= 5.0:
        msg = f"rating mean must be within 1..5, got {mean}"
        raise ValueError(msg)

    def dist(centre: float) -> list[float]:
        weights = [math.exp(-((k - centre) ** 2) / (2 * spread * spread)) for k in range(1, 6)]
        total = sum(weights)
        return [w / total for w in weights]

    low, high = -20.0, 26.0
    for _ in range(100):  # bisection on the latent centre: the mean rises with it
        mid = (low + high) / 2
        if sum((k + 1) * p for k, p in enumerate(dist(mid))) < mean:
            low = mid
        else:
            high = mid
    return dist((low + high) / 2)


def latency_distribution(median: float, sigma: float) -> list[float]:
    """Probability of each latency bucket (overflow last) for a lognormal latency."""
    mu = math.log(median)

    def cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2.0))))

    cdfs = [cdf(b) for b in LATENCY_BOUNDS]
    probs = [cdfs[0]] + [b - a for a, b in itertools.pairwise(cdfs)]
    return [*probs, 1.0 - cdfs[-1]]


class Poisson:
    """Draws from a Poisson distribution of fixed mean by inverting its tabulated CDF.

    The simulator draws the same few means millions of times, so a table and
    a C-speed ``bisect`` beat any per-draw algorithm; the table stops where
    the remaining tail is below 1e-15.
    """

    __slots__ = ("cdf", "mean")

    def __init__(self, mean: float) -> None:
        self.mean = mean
        cdf: list[float] = []
        if mean > 0:
            k, log_term, total = 0, -mean, 0.0  # log P(X = k) and P(X <= k)
            limit = mean + 40 * math.sqrt(mean) + 40
            while k <= limit:
                total += math.exp(log_term)
                cdf.append(total)
                if total >= 1.0 - 1e-15 and k >= mean:
                    break
                k += 1
                log_term += math.log(mean / k)
        # The last entry takes the truncated tail, so a draw never runs off the table.
        cdf.append(2.0)
        self.cdf = cdf

    def draw(self, rng: random.Random) -> int:
        """One draw."""
        return bisect.bisect_left(self.cdf, rng.random())


class LookSampler:
    """Draws what one variant adds to its stats during one look of fixed length."""

    def __init__(self, profile: VariantProfile, requests_per_look: float) -> None:
        self.tokens_per_answer = profile.tokens_per_answer
        self.mean_latency = profile.latency_median * math.exp(profile.latency_sigma**2 / 2)
        answers = requests_per_look * (1.0 - profile.error_rate)
        rated = answers * profile.rating_rate
        self.errors = Poisson(requests_per_look * profile.error_rate)
        self.retries = Poisson(requests_per_look * profile.retry_rate)
        self.cultural = Poisson(rated * profile.cultural_rate)
        dist = rating_distribution(profile.rating_mean, profile.rating_spread)
        self.ratings = [Poisson(rated * p) for p in dist]
        probs = latency_distribution(profile.latency_median, profile.latency_sigma)
        shift = min(0, round(math.log(profile.ttft_fraction) / math.log(1.25)))
        last = len(probs) - 1
        # (latency bucket, ttft bucket, draw) for buckets worth a draw of their own.
        self.buckets = [
            (i, max(0, min(last, i + shift)), Poisson(answers * p).cdf)
            for i, p in enumerate(probs)
            if answers * p >= _TINY
        ]
        small = [(i, answers * p) for i, p in enumerate(probs) if 0 < answers * p < _TINY]
        self.small_index = [i for i, _ in small]
        self.small_ttft = {i: max(0, i + shift) for i, _ in small}
        self.small_weights = [m for _, m in small]
        self.small = Poisson(sum(self.small_weights))

    def sample(self, rng: random.Random, into: WindowStats) -> int:
        """Add one look's counts into ``into``; return the requests added."""
        latency, ttft = into.latency, into.ttft
        answered = 0
        uniform, search = rng.random, bisect.bisect_left
        for i, j, cdf in self.buckets:
            n = search(cdf, uniform())
            if n:
                latency[i] += n
                ttft[j] += n
                answered += n
        extra = self.small.draw(rng)
        if extra:
            for i in rng.choices(self.small_index, self.small_weights, k=extra):
                latency[i] += 1
                ttft[self.small_ttft[i]] += 1
            answered += extra
        errors = self.errors.draw(rng)
        if errors:
            into.errors["upstream"] = into.errors.get("upstream", 0) + errors
        ratings = into.ratings
        for level, draw in enumerate(self.ratings):
            ratings[level] += draw.draw(rng)
        cultural = self.cultural.draw(rng)
        if cultural:
            into.tags[CULTURAL_TAG] = into.tags.get(CULTURAL_TAG, 0) + cultural
        into.user_retries += self.retries.draw(rng)
        into.completion_tokens += round(answered * self.tokens_per_answer)
        into.latency_sum += answered * self.mean_latency
        requests = answered + errors
        into.requests += requests
        return requests
