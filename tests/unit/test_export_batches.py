"""Batching, batch ids, identifiers and PII scrubbing (pure Python)."""

from __future__ import annotations

import hashlib

import pytest

from lakecdp.export.batches import REMOVE, UPSERT, Batch, Member, batch_id, chunk_members, json_bytes, plan_batches
from lakecdp.export.identifiers import email_sha256, mailchimp_subscriber_hash, normalize_email, scrub_pii


def member(customer_id: str, action: str = "create", email: str | None = "a@b.co") -> Member:
    return Member(customer_id, action, f"id-{customer_id}", "h", None if action == REMOVE else email)


def test_normalized_hashes_trim_and_lowercase():
    assert normalize_email("  Ada@Example.COM ") == "ada@example.com"
    assert normalize_email("   ") is None and normalize_email(None) is None
    assert normalize_email("no-at-sign.example.com") is None and normalize_email("ada @example.com") is None
    assert email_sha256(" Ada@Example.COM") == hashlib.sha256(b"ada@example.com").hexdigest()
    # Mailchimp's documented example: the MD5 of the lowercase address.
    assert mailchimp_subscriber_hash("Urist.McVankab@freddiesjokes.com") == hashlib.md5(b"urist.mcvankab@freddiesjokes.com").hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ada@example.com looks fake or invalid", "<email> looks fake or invalid"),
        ('Invalid email "bob.smith+x@mail.co.uk".', 'Invalid email "<email>".'),
        ("no address here", "no address here"),
        (None, None),
    ],
)
def test_scrub_pii_removes_addresses(text, expected):
    assert scrub_pii(text) == expected


def test_chunks_respect_count_and_bytes():
    members = [member(f"c{i}") for i in range(7)]
    assert [len(c) for c in chunk_members(members, max_members=3)] == [3, 3, 1]
    sized = list(chunk_members(members, max_members=100, max_bytes=25, size_of=lambda m: 10))
    assert [len(c) for c in sized] == [2, 2, 2, 1]
    assert [m.customer_id for c in sized for m in c] == [m.customer_id for m in members]  # nothing lost or repeated
    # A single member larger than the limit still goes (alone): the ESP answers for it.
    assert [len(c) for c in chunk_members(members[:2], max_members=5, max_bytes=5, size_of=lambda m: 10)] == [1, 1]


def test_plan_batches_splits_by_segment_and_kind_in_a_stable_order():
    members = {"s2": [member("c3"), member("c1", "remove"), member("c2", "update")], "s1": [member("c9")]}
    batches = plan_batches("run1", "mc", members, max_members=1)
    assert [(b.segment, b.kind, b.members[0].customer_id, b.seq) for b in batches] == [
        ("s1", UPSERT, "c9", 0),
        ("s2", UPSERT, "c2", 1),
        ("s2", UPSERT, "c3", 2),
        ("s2", REMOVE, "c1", 3),
    ]
    again = plan_batches("run1", "mc", {k: list(reversed(v)) for k, v in members.items()}, max_members=1)
    assert [b.batch_id for b in again] == [b.batch_id for b in batches]


def test_batch_ids_are_deterministic_and_distinct():
    assert batch_id("r", "mc", "s", 0) == batch_id("r", "mc", "s", 0)
    assert len({batch_id("r", "mc", "s", n) for n in range(100)} | {batch_id("r2", "mc", "s", 0)}) == 101
    batch = Batch("r", "mc", "s", 4, UPSERT, (member("c1"), member("c2")))
    assert batch.idempotency_key == batch.batch_id == batch_id("r", "mc", "s", 4)
    alone = batch.single(batch.members[1])
    assert alone.batch_id == batch.batch_id and alone.idempotency_key == f"{batch.batch_id}.c2" and alone.members == (batch.members[1],)


def test_json_bytes_is_compact_utf8():
    assert json_bytes({"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'.encode()
