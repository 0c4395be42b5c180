"""What every ESP adapter shares: credentials from the environment, the HTTP policy, outcome helpers."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx

from lakecdp.clock import Clock, SystemClock
from lakecdp.config import ConfigError
from lakecdp.export.batches import Batch, BatchResult, Member, MemberOutcome
from lakecdp.export.http import ApiClient, Limiter, RetryPolicy
from lakecdp.export.identifiers import scrub_pii
from lakecdp.export.settings import CONF_FILE, RateLimitSpec

# What `Adapter.forget` reports: short, PII-free words that go into the erasure proof.
DELETED = "deleted"
DELETION_REQUESTED = "deletion requested"  # accepted; the ESP deletes asynchronously
NOT_FOUND = "not found"
NOTIFIED = "notified"  # the receiver acknowledged the erasure notice


# What `ReportsOptOuts.opt_outs` yields: the kind of opt-out and how the ESP names the person.
UNSUBSCRIBED, BOUNCED = "unsubscribed", "bounced"
OPT_OUT_KINDS = (UNSUBSCRIBED, BOUNCED)
MATCH_KEY_KINDS = ("external_id", "subscriber_hash", "email_sha256")


@dataclass(frozen=True)
class OptOut:
    """One ESP-side opt-out, named only by what the ESP returned (never by an address).

    Args:
        key_kind: "external_id" (the id the export sent), "subscriber_hash" (Mailchimp's MD5) or
            "email_sha256" (computed by the adapter from an address the ESP returned, which is then dropped).
        kind: UNSUBSCRIBED (a consent withdrawal) or BOUNCED (the address cannot receive mail).
        changed_at: when the ESP recorded it, None when the ESP does not say.
        reason: the ESP's own word for it, PII-free (it goes into export_suppressions.reason).
    """

    key_kind: str
    key: str
    kind: str
    changed_at: datetime | None
    reason: str


@runtime_checkable
class ReportsOptOuts(Protocol):
    """An adapter that can list its ESP's marketing-email opt-outs (`lakecdp export sync-unsubscribes`)."""

    def opt_outs(self, since: datetime | None) -> Iterator[OptOut]:
        """Unsubscribes and bounces recorded at the ESP since `since` (all when None), every page followed."""
        ...

    def close(self) -> None: ...


def not_supported(why: str) -> str:
    return f"not supported: {why}"


@dataclass(frozen=True)
class BatchLimits:
    max_members: int
    max_bytes: int | None = None
    size_of: Callable[[Member], int] | None = None


@dataclass
class Runtime:
    """What an adapter needs from outside: secrets, time, and (for tests and benchmarks) a transport.

    `clock` is the one source of time: signatures and Retry-After dates read `now`, rate limits
    `monotonic`, backoffs `sleep` (a FrozenClock's sleep moves it, so a test never waits).
    """

    env: Mapping[str, str]
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    transport: httpx.BaseTransport | None = None


class Adapter(ABC):
    """One destination. `send` never raises for a member's problem: it returns outcomes.

    Raises DestinationError only when the whole destination refuses (credentials, a missing
    list); the runner then stops that destination and leaves its batches pending.
    """

    identifier_kind: ClassVar[str] = "customer_id"
    honours_idempotency_keys: ClassVar[bool] = False

    def __init__(self, name: str, settings: Any, attributes: Sequence[str], runtime: Runtime) -> None:
        self.name, self.settings, self.attributes, self.runtime = name, settings, tuple(attributes), runtime

    @property
    def max_in_flight(self) -> int:
        return self.settings.max_in_flight

    @classmethod
    def batch_limits(cls, settings: Any, attributes: Sequence[str]) -> BatchLimits:
        """How the planner cuts batches for this destination (no secrets needed: `plan` uses it too)."""
        return BatchLimits(settings.batch_size)

    @abstractmethod
    def send(self, batch: Batch) -> BatchResult: ...

    @abstractmethod
    def forget(self, customer_id: str, email: str | None) -> str:
        """Ask the destination to delete everything it holds on one customer (right to erasure).

        Args:
            email: the normalized address the exporters send, None when the customer has none.
        Returns:
            A PII-free outcome: DELETED, DELETION_REQUESTED, NOT_FOUND, NOTIFIED or `not_supported(...)`.
        Raises:
            RetriesExhausted, DestinationError: the deletion did not happen; the erasure must wait and retry.
        """

    def finish(self, results: Sequence[BatchResult]) -> None:  # noqa: B027 - optional: most adapters have nothing to finish
        """After a destination's batches are done (S3 writes manifests here)."""

    @property
    def requests_sent(self) -> int:
        """Requests made to the destination so far, every attempt counted (the run report's `requests`)."""
        client = getattr(self, "client", None)
        return client.requests_sent if client is not None else 0

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    def secret(self, env_key: str) -> str:
        """The value of the environment variable named by settings.<env_key>; fails loudly when unset."""
        return read_secret(self.runtime.env, getattr(self.settings, env_key), f"{CONF_FILE}: esp.destinations.{self.name}.{env_key}")

    def api_client(self, *, per_endpoint: bool = False, rate_limits: Sequence[RateLimitSpec] | None = None) -> ApiClient:
        """A client with the destination's limits and retry policy.

        Args:
            rate_limits: instead of settings.rate_limits, for an endpoint the ESP limits on its own.
        """
        return build_api_client(self.settings, self.runtime, per_endpoint=per_endpoint, rate_limits=rate_limits)

    def attribute_values(self, member: Member) -> dict[str, Any]:
        return {name: member.attributes.get(name) for name in self.attributes}


def read_secret(env: Mapping[str, str], variable: str, named_by: str) -> str:
    """The value of environment variable `variable`; fails loudly when unset (`named_by`: the conf key naming it)."""
    value = env.get(variable, "")
    if not value:
        raise ConfigError(
            f"${variable} is not set (named by {named_by}). Fix: export {variable}=<secret> where lakecdp runs, or disable the destination."
        )
    return value


def build_api_client(
    settings: Any, runtime: Runtime, *, per_endpoint: bool = False, rate_limits: Sequence[RateLimitSpec] | None = None
) -> ApiClient:
    """The one HTTP client for a destination's settings (rate_limits, fill_fraction, max_in_flight, retry, timeout)."""
    s = settings
    limiter = Limiter(
        s.rate_limits if rate_limits is None else rate_limits,
        fill_fraction=s.fill_fraction,
        max_in_flight=s.max_in_flight,
        per_endpoint=per_endpoint,
        monotonic=runtime.clock.monotonic,
        sleep=runtime.clock.sleep,
    )
    policy = RetryPolicy(s.retry, clock=runtime.clock, rng=runtime.rng)
    return ApiClient(
        limiter=limiter,
        policy=policy,
        timeout=s.timeout.total_seconds(),
        max_connections=s.max_in_flight,
        sleep=runtime.clock.sleep,
        transport=runtime.transport,
    )


def all_failed(batch: Batch, reason: str, *, retryable: bool) -> BatchResult:
    return BatchResult(batch, [MemberOutcome.failed(m.customer_id, reason, retryable=retryable) for m in batch.members])


def all_sent(batch: Batch, **stats: int) -> BatchResult:
    return BatchResult(batch, [MemberOutcome.sent(m.customer_id) for m in batch.members], stats=dict(stats))


def http_reason(response: httpx.Response, detail: str | None = None) -> str:
    """'HTTP 400: <the ESP's words>' with any email address removed."""
    text = detail if detail is not None else response.text
    return f"HTTP {response.status_code}: {scrub_pii(text, 240)}"
