"""The shared HTTP policy: token buckets on a fake clock, server-directed waits, retries, exhaustion."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from lakecdp.clock import FrozenClock
from lakecdp.export.http import ApiClient, Limiter, RetriesExhausted, RetryPolicy, TokenBucket
from lakecdp.export.settings import RateLimitSpec, RetrySettings

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeTime:
    """monotonic() and sleep() that only move when slept: rate limits become exact arithmetic."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_token_bucket_reserves_in_order():
    clock = FakeTime()
    bucket = TokenBucket(capacity=2, rate=1.0, monotonic=clock.monotonic)
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    "limits",
    [
        [RateLimitSpec(requests=10, per=timedelta(seconds=1)), RateLimitSpec(requests=150, per=timedelta(minutes=1))],
        [RateLimitSpec(requests=3000, per=timedelta(seconds=3))],
    ],
)
def test_limiter_keeps_every_window_within_the_documented_limit(limits):
    clock = FakeTime()
    limiter = Limiter(limits, monotonic=clock.monotonic, sleep=clock.sleep)
    sends = []
    for _ in range(400 if limits[0].requests == 10 else 12_000):
        limiter.acquire()
        sends.append(clock.now)
    for limit in limits:
        assert max_in_window(sends, limit.per.total_seconds()) <= limit.requests
    # ... and sustains at least 90% of the binding (slowest) documented rate.
    binding = min(limit.per_second for limit in limits)
    half = sends[-1] / 2
    steady = sum(1 for t in sends if t > half) / half
    assert 0.9 * binding <= steady <= binding


def test_limits_are_per_endpoint_when_asked():
    clock = FakeTime()
    limiter = Limiter(
        [RateLimitSpec(requests=2, per=timedelta(seconds=1))], per_endpoint=True, monotonic=clock.monotonic, sleep=clock.sleep
    )
    for endpoint in ("a", "b", "a", "b"):
        limiter.acquire(endpoint)
    assert clock.now == pytest.approx(1.02)  # two buckets of one token each; one shared bucket would need 3.06 s


def test_pause_holds_every_caller():
    clock = FakeTime()
    limiter = Limiter([], monotonic=clock.monotonic, sleep=clock.sleep)
    limiter.pause(7.0)
    limiter.acquire()
    assert clock.now == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": format_datetime(NOW + timedelta(seconds=30), usegmt=True)}, 30.0),
        ({"ratelimit-reset": "12"}, 12.0),  # Klaviyo: seconds to wait
        ({"x-ratelimit-reset": str(int(NOW.timestamp()) + 2)}, 2.0),  # Braze: an epoch second
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_server_delay_reads_the_documented_headers(headers, expected):
    policy = RetryPolicy(clock=FrozenClock(NOW))
    assert policy.server_delay(httpx.Headers(headers)) == (None if expected is None else pytest.approx(expected))


def test_backoff_is_exponential_with_jitter_and_capped():
    policy = RetryPolicy(RetrySettings(base_delay="100ms", max_delay="1s"), rng=random.Random(1))
    delays = [policy.backoff(attempt) for attempt in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(1.0, 0.1 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def client_for(handler, *, attempts=4) -> tuple[ApiClient, FakeTime]:
    clock = FakeTime()
    policy = RetryPolicy(
        RetrySettings(max_attempts=attempts, base_delay="100ms", max_delay="1s"), clock=FrozenClock(NOW), rng=random.Random(3)
    )
    limiter = Limiter([], monotonic=clock.monotonic, sleep=clock.sleep)
    return ApiClient(limiter=limiter, policy=policy, sleep=clock.sleep, transport=httpx.MockTransport(handler)), clock


def test_retries_a_429_after_the_servers_retry_after_then_succeeds():
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503), httpx.Response(200, json={"ok": True})])
    client, clock = client_for(lambda request: next(answers))
    response = client.request("POST", "https://esp.example/api", body=b"{}")
    assert response.status_code == 200 and client.requests_sent == 3
    assert clock.slept[0] == pytest.approx(2.0)  # exactly what the server asked for
    assert 0.05 <= clock.slept[-1] <= 0.2  # then our own backoff for the bare 503


def test_gives_up_after_max_attempts_with_a_reason_that_has_no_address():
    client, _ = client_for(lambda request: httpx.Response(503, text="down for ada@example.com"), attempts=3)
    with pytest.raises(RetriesExhausted) as raised:
        client.request("POST", "https://esp.example/api", endpoint="users.track")
    assert raised.value.reason == "HTTP 503 from users.track: down for <email> after 3 attempts"
    assert client.requests_sent == 3


def test_a_client_error_is_returned_for_the_adapter_to_read_not_retried():
    client, clock = client_for(lambda request: httpx.Response(400, json={"message": "bad"}))
    assert client.request("POST", "https://esp.example/api").status_code == 400
    assert client.requests_sent == 1 and clock.slept == []


def test_a_retry_after_beyond_the_limit_ends_retries_at_once():
    client, clock = client_for(lambda request: httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(RetriesExhausted, match="server asked to wait 3600s"):
        client.request("GET", "https://esp.example/api")
    assert client.requests_sent == 1 and clock.slept == []


def test_transport_errors_are_retried():
    calls = iter([httpx.ConnectError("refused"), None])

    def handler(request):
        error = next(calls)
        if error:
            raise error
        return httpx.Response(204)

    client, _ = client_for(handler)
    assert client.request("DELETE", "https://esp.example/api").status_code == 204


def test_header_function_is_called_per_attempt_for_fresh_signatures():
    seen = []
    answers = iter([httpx.Response(500), httpx.Response(200)])

    def handler(request):
        seen.append(request.headers["X-Attempt"])
        return next(answers)

    counter = iter(range(10))
    client, _ = client_for(handler)
    client.request("POST", "https://esp.example/api", headers=lambda body: {"X-Attempt": str(next(counter))}, body=b"x")
    assert seen == ["0", "1"]
