"""Upstream failure classification and the retry policy (attempts, deadline, Retry-After)."""

from __future__ import annotations

import email.utils
import time

import pytest

from tara.gateway.retries import RetryPolicy
from tara.gateway.upstream import (
    UpstreamError,
    connection_failed,
    failure_for_status,
    parse_retry_after,
    redact_url,
    timed_out,
)
from tara.settings import UpstreamSettings


@pytest.mark.parametrize(
    ("status", "error_class", "client_status", "retryable"),
    [
        (429, "rate_limited", 503, True),
        (500, "upstream", 502, True),
        (502, "upstream", 502, True),
        (503, "upstream", 503, True),
        (504, "upstream", 502, True),
        (501, "upstream", 502, False),
        (401, "upstream", 502, False),
        (403, "upstream", 502, False),
        (404, "upstream", 502, False),
    ],
)
def test_status_classes(status: int, error_class: str, client_status: int, retryable: bool) -> None:
    failure = failure_for_status(status, None)
    assert failure is not None
    assert (failure.error_class, failure.status, failure.retryable) == (
        error_class,
        client_status,
        retryable,
    )


@pytest.mark.parametrize("status", [400, 409, 413, 422])
def test_client_errors_pass_through(status: int) -> None:
    assert failure_for_status(status, None) is None


def test_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(10, abs=1)
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:00", now=now) is None  # no zone
    failure = failure_for_status(429, "3")
    assert failure is not None
    assert failure.retry_after == 3.0


def test_error_message_counts_attempts_and_names_no_url() -> None:
    failure = timed_out()
    failure.attempts = 3
    error = failure.to_error()
    assert error.status == 504
    assert "3 attempts" in error.message
    assert "http" not in error.message
    assert "1 attempt)" in connection_failed().to_error().message


def test_redact_url() -> None:
    assert redact_url("https://u:secret@api.example/v1") == "https://api.example/v1"
    assert redact_url("http://127.0.0.1:8081/v1") == "http://127.0.0.1:8081/v1"


def settings(**kw: float) -> UpstreamSettings:
    base: dict[str, float] = {"retry_initial_backoff": 0.001, "retry_max_backoff": 0.002}
    return UpstreamSettings(**{**base, **kw})  # type: ignore[arg-type]


class Script:
    """An attempt function that fails with the given errors, then answers."""

    def __init__(self, *failures: UpstreamError) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_first_attempt_success_needs_no_retry() -> None:
    script, retries = Script(), []
    assert await RetryPolicy(settings()).run(script, lambda f, w: retries.append(f)) == "ok"
    assert script.calls == 1
    assert retries == []


async def test_retries_until_success_and_reports_each_retry() -> None:
    script = Script(timed_out(), connection_failed())
    seen: list[tuple[str, float]] = []
    result = await RetryPolicy(settings()).run(script, lambda f, w: seen.append((f.error_class, w)))
    assert result == "ok"
    assert script.calls == 3
    assert [c for c, _ in seen] == ["timeout", "connection"]
    assert all(0 <= w <= 0.002 for _, w in seen)


async def test_gives_up_after_attempts_with_the_count() -> None:
    script = Script(*(connection_failed() for _ in range(5)))
    with pytest.raises(UpstreamError) as info:
        await RetryPolicy(settings(retry_attempts=3)).run(script, lambda f, w: None)
    assert script.calls == 3
    assert info.value.attempts == 3


async def test_non_retryable_is_not_retried() -> None:
    denied = failure_for_status(401, None)
    assert denied is not None
    script = Script(denied)
    with pytest.raises(UpstreamError):
        await RetryPolicy(settings()).run(script, lambda f, w: None)
    assert script.calls == 1


async def test_single_attempt_setting() -> None:
    script = Script(timed_out())
    with pytest.raises(UpstreamError):
        await RetryPolicy(settings(retry_attempts=1)).run(script, lambda f, w: None)
    assert script.calls == 1


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    limited = failure_for_status(429, "100")
    assert limited is not None
    waits: list[float] = []
    script = Script(limited)
    policy = RetryPolicy(settings(retry_after_cap=0.01))
    assert await policy.run(script, lambda f, w: waits.append(w)) == "ok"
    assert waits == [0.01]


async def test_no_attempt_starts_past_the_deadline() -> None:
    limited = failure_for_status(429, "1")
    assert limited is not None
    script = Script(limited)
    policy = RetryPolicy(settings(retry_after_cap=1.0, retry_deadline=0.5, retry_attempts=5))
    with pytest.raises(UpstreamError) as info:
        await policy.run(script, lambda f, w: None)
    assert script.calls == 1
    assert info.value.error_class == "rate_limited"
