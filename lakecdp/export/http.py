"""The one HTTP policy for every ESP adapter: token-bucket rate limits, concurrency caps, retries.

Retries honour what the server says before guessing: `Retry-After` (seconds or an HTTP date,
RFC 9110 §10.2.3), then `RateLimit-Reset` (seconds to wait, Klaviyo), then `X-RateLimit-Reset`
(an epoch second, Braze); otherwise exponential backoff with full jitter.
"""

from __future__ import annotations

import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from lakecdp.clock import Clock, SystemClock
from lakecdp.export.identifiers import scrub_pii
from lakecdp.export.settings import RateLimitSpec, RetrySettings, token_bucket

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


_TLS_LOCK = threading.Lock()
_TLS: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process (loading the CA bundle per client costs a noticeable pause)."""
    global _TLS
    with _TLS_LOCK:
        if _TLS is None:
            import certifi

            _TLS = ssl.create_default_context(cafile=certifi.where())
        return _TLS


class RetriesExhausted(RuntimeError):
    """A request still failed after the policy's attempts; `reason` is safe to record, `wait_s` is how long
    the server last asked us to wait (Retry-After or a rate-limit reset), None when it said nothing."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait_s = reason, wait_s


class DestinationError(RuntimeError):
    """The destination refused the whole export (credentials, configuration): stop, keep batches pending."""


class TokenBucket:
    """Reservation-style token bucket: `reserve()` takes a token now and says how long to wait for it."""

    def __init__(self, capacity: float, rate: float, monotonic: Callable[[], float]) -> None:
        self.capacity, self.rate, self._monotonic = capacity, rate, monotonic
        self._tokens, self._at = capacity, monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Limiter:
    """Rate limits (one bucket set per endpoint, or shared) plus a cap on requests in flight."""

    def __init__(
        self,
        limits: Sequence[RateLimitSpec] = (),
        *,
        fill_fraction: float = 0.95,
        max_in_flight: int = 1,
        per_endpoint: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._limits = [token_bucket(limit, fill_fraction) for limit in limits]
        self._per_endpoint = per_endpoint
        self._buckets: dict[str, list[TokenBucket]] = {}
        self._monotonic, self._sleep = monotonic, sleep
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self.max_in_flight = max_in_flight
        self.busy_seconds = 0.0  # request-slot time in use: utilisation = busy / (elapsed * max_in_flight)

    def _bucket_set(self, endpoint: str) -> list[TokenBucket]:
        key = endpoint if self._per_endpoint else "*"
        with self._lock:
            if key not in self._buckets:
                self._buckets[key] = [TokenBucket(cap, rate, self._monotonic) for cap, rate in self._limits]
            return self._buckets[key]

    def acquire(self, endpoint: str = "*") -> None:
        """Block until a request to `endpoint` is allowed by every bucket and any server-requested pause."""
        pause = self._paused_until - self._monotonic()
        if pause > 0:
            self._sleep(pause)
        wait = max((bucket.reserve() for bucket in self._bucket_set(endpoint)), default=0.0)
        if wait > 0:
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (a 429 speaks for the whole account, not one thread)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._monotonic() + seconds)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        with self._in_flight:
            started = self._monotonic()
            try:
                yield
            finally:
                with self._lock:
                    self.busy_seconds += self._monotonic() - started


@dataclass
class RetryPolicy:
    settings: RetrySettings = field(default_factory=RetrySettings)
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for attempt 1, 2, ...; never above max_delay."""
        ceiling = min(self.settings.max_delay.total_seconds(), self.settings.base_delay.total_seconds() * 2 ** (attempt - 1))
        return self.rng.uniform(ceiling / 2, ceiling)

    def server_delay(self, headers: Mapping[str, str]) -> float | None:
        """Seconds the server asked us to wait, from its headers; None when it said nothing usable."""
        retry_after = headers.get("retry-after")
        if retry_after:
            text = retry_after.strip()
            if text.replace(".", "", 1).isdigit():
                return float(text)
            try:
                return max(0.0, (parsedate_to_datetime(text) - self.clock.now()).total_seconds())
            except (TypeError, ValueError):
                pass
        reset = headers.get("ratelimit-reset")
        if reset and reset.strip().replace(".", "", 1).isdigit():
            return float(reset)
        reset = headers.get("x-ratelimit-reset")
        if reset and reset.strip().replace(".", "", 1).isdigit():
            value = float(reset)
            # Braze sends an epoch second; anything small is already a delta.
            return max(0.0, value - self.clock.now().timestamp()) if value > 1e9 else value
        return None


class ApiClient:
    """One destination's HTTP client: every request passes the limiter and the retry policy."""

    def __init__(
        self,
        *,
        limiter: Limiter,
        policy: RetryPolicy,
        timeout: float = 30.0,
        max_connections: int = 10,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.limiter, self.policy, self._sleep = limiter, policy, sleep
        self.http = httpx.Client(
            verify=tls_context(),
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str = "*",
        headers: Callable[[bytes], Mapping[str, str]] | Mapping[str, str] | None = None,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        is_retryable: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send with limits and retries; returns the first non-retryable response (2xx or a 4xx to interpret).

        Args:
            headers: a mapping, or a function of the body called on every attempt (fresh signatures, tokens).
            is_retryable: for an ESP whose retry statuses also carry permanent errors (Mandrill answers a bad
                key with a 500): False returns the response instead of retrying it.
        Raises:
            RetriesExhausted: transport errors or retryable statuses outlasted the policy.
        """
        attempts = self.policy.settings.max_attempts
        limit_after = self.policy.settings.max_retry_after.total_seconds()
        asked: float | None = None
        for attempt in range(1, attempts + 1):
            sent_headers = headers(body or b"") if callable(headers) else dict(headers or {})
            self.limiter.acquire(endpoint)
            try:
                with self.limiter.in_flight():
                    with self._count_lock:
                        self.requests_sent += 1
                    response = self.http.request(method, url, headers=sent_headers, content=body, params=params)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__} calling {endpoint}"
                delay, asked = self.policy.backoff(attempt), None
            else:
                if response.status_code not in RETRY_STATUSES or (is_retryable is not None and not is_retryable(response)):
                    return response
                reason = f"HTTP {response.status_code} from {endpoint}: {scrub_pii(response.text, 160)}"
                asked = self.policy.server_delay(response.headers)
                delay = self.policy.backoff(attempt) if asked is None else asked
                if delay > limit_after:
                    raise RetriesExhausted(f"{reason} (server asked to wait {delay:.0f}s)", wait_s=delay)
                if response.status_code == 429:
                    self.limiter.pause(delay)
            if attempt < attempts:
                self._sleep(delay)
        raise RetriesExhausted(f"{reason} after {attempts} attempts", wait_s=asked)


def call_with_retries(
    call: Callable[[], Any],
    *,
    policy: RetryPolicy,
    limiter: Limiter,
    is_retryable: Callable[[Exception], bool],
    describe: Callable[[Exception], str],
    endpoint: str = "*",
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """The same policy for SDK calls (boto3): limiter, then retry the exceptions `is_retryable` accepts."""
    attempts = policy.settings.max_attempts
    for attempt in range(1, attempts + 1):
        limiter.acquire(endpoint)
        try:
            with limiter.in_flight():
                return call()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            reason = describe(exc)
        if attempt < attempts:
            sleep(policy.backoff(attempt))
    raise RetriesExhausted(f"{reason} after {attempts} attempts")
