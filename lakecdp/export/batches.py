"""Members, batches and outcomes: what an adapter sends and what it reports back (pure Python)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

CREATE, UPDATE, REMOVE = "create", "update", "remove"
ACTIONS = (CREATE, UPDATE, REMOVE)
UPSERT = "upsert"  # a batch of creates and updates: every ESP here treats them alike


@dataclass(frozen=True)
class Member:
    """One customer's change for one destination and segment.

    `identifier` is what the destination knows them by without a plain email (a Mailchimp
    subscriber hash, an external id, a SHA-256): it is what a later remove needs. `email`,
    `attributes` and `merge_fields` are only set for upserts and only live in memory while sending.
    `merge_fields` is the content decision (block per slot, token values, experiment variants)
    under the merge tags content.yaml names, for destinations with `content_fields: true`.
    `customer_id` is lakecdp's pseudonym (what the log and outcomes are keyed by); `external_id`
    is the retailer's own id from `customers`, which is what an ESP is told (`esp_id`).
    """

    customer_id: str
    action: str
    identifier: str
    payload_hash: str
    email: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    merge_fields: Mapping[str, str] = field(default_factory=dict)
    external_id: str | None = None

    @property
    def esp_id(self) -> str:
        """The id an ESP knows the customer by: the retailer's id (the pseudonym only if none is recorded)."""
        return self.external_id or self.customer_id

    @property
    def kind(self) -> str:
        return REMOVE if self.action == REMOVE else UPSERT


@dataclass(frozen=True)
class Batch:
    """One request's worth of members (one segment, one kind); its id is fixed before anything is sent."""

    run_id: str
    destination: str
    segment: str
    seq: int
    kind: str
    members: tuple[Member, ...]
    batch_id: str = ""
    idempotency_key: str = ""
    planned_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.batch_id:
            object.__setattr__(self, "batch_id", batch_id(self.run_id, self.destination, self.segment, self.seq))
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", self.batch_id)

    def single(self, member: Member) -> Batch:
        """The one-member batch used to retry a partial failure row by row (its own idempotency key)."""
        return replace(self, members=(member,), idempotency_key=f"{self.batch_id}.{member.customer_id}")


@dataclass(frozen=True)
class MemberOutcome:
    customer_id: str
    ok: bool
    reason: str | None = None
    retryable: bool = False  # transient: the next run plans the member again
    retry_alone: bool = False  # a partial failure of a larger batch: resend this member on its own once

    @classmethod
    def sent(cls, customer_id: str) -> MemberOutcome:
        return cls(customer_id, True)

    @classmethod
    def failed(cls, customer_id: str, reason: str | None, *, retryable: bool = False, retry_alone: bool = False) -> MemberOutcome:
        return cls(customer_id, False, reason or "failed without a reason from the destination", retryable, retry_alone)


@dataclass
class BatchResult:
    batch: Batch
    outcomes: list[MemberOutcome]
    attempts: int = 1
    stats: dict[str, int] = field(default_factory=dict)  # ESP-reported counts (created, updated, matched ...)


def batch_id(run_id: str, destination: str, segment: str, seq: int) -> str:
    """Deterministic: the same planned batch has the same id (and idempotency key) on every resend."""
    return hashlib.sha256(f"{run_id}\x00{destination}\x00{segment}\x00{seq}".encode()).hexdigest()[:32]


def chunk_members(
    members: Iterable[Member],
    *,
    max_members: int,
    max_bytes: int | None = None,
    size_of: Callable[[Member], int] | None = None,
) -> Iterator[list[Member]]:
    """Split into request-sized chunks by member count and, when given, serialized bytes."""
    chunk: list[Member] = []
    used = 0
    for member in members:
        size = size_of(member) if (max_bytes and size_of) else 0
        if chunk and (len(chunk) >= max_members or (max_bytes and used + size > max_bytes)):
            yield chunk
            chunk, used = [], 0
        chunk.append(member)
        used += size
    if chunk:
        yield chunk


def plan_batches(
    run_id: str,
    destination: str,
    members_by_segment: Mapping[str, Sequence[Member]],
    *,
    max_members: int,
    max_bytes: int | None = None,
    size_of: Callable[[Member], int] | None = None,
    first_seq: int = 0,
) -> list[Batch]:
    """Batches per segment: upserts first, then removes, in customer order (stable across reruns)."""
    batches: list[Batch] = []
    seq = first_seq
    for segment in sorted(members_by_segment):
        members = sorted(members_by_segment[segment], key=lambda m: (m.kind == REMOVE, m.customer_id))
        for kind in (UPSERT, REMOVE):
            of_kind = [m for m in members if m.kind == kind]
            for chunk in chunk_members(of_kind, max_members=max_members, max_bytes=max_bytes, size_of=size_of):
                batches.append(Batch(run_id, destination, segment, seq, kind, tuple(chunk)))
                seq += 1
    return batches


def json_bytes(document: Any) -> bytes:
    """Compact UTF-8 JSON, the body every adapter sends."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
