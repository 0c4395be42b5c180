"""A hostile corpus through the real collector (Segment's and RudderStack's own SDKs, raw HTTP, a file
dropped in the landing zone), then the real stream: each case ends where it should, or the client was told.

Every case names its HTTP status and its final place: bronze, quarantine with a reason, or nowhere
because the client got a 4xx. Nothing a client was told was accepted may end up nowhere.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import segment.analytics.client as segment
from rudderstack.analytics.client import Client as RudderClient

from lakecdp.clock import FrozenClock
from lakecdp.collector.app import CollectorConfig, create_app
from lakecdp.collector.landing import LandingWriter
from lakecdp.collector.server import CollectorThread
from lakecdp.config import load_settings
from lakecdp.lake import open_lake
from lakecdp.stream import run_stream
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

KEY = "wk_corpus"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
AN_HOUR_AGO = NOW - timedelta(hours=1)
# Contact data the corpus sends in places other than the identify traits that feed `customers`.
CONTACT_VALUES = ("ada@example.com", "ada.l@example.org", "ada%40example.net", "5551234567", "+44 20 7946 0958", "Lovelace")


@dataclass(frozen=True)
class Case:
    """What one message must become: `status` of its request, and `place`: bronze, quarantine, or None (refused, nowhere)."""

    status: int
    place: str | None
    reason: str = ""  # part of the quarantine reason, or of the 4xx error


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def track(message_id: str, **overrides) -> dict:
    message = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": message_id,
        "userId": "cust_1",
        "timestamp": iso(AN_HOUR_AGO),
        "properties": {"product_id": "p1", "price": 10.0},
    }
    return {**message, **overrides}


# Raw HTTP: (endpoint, body as sent, headers) per case.
RAW: dict[str, tuple[str, bytes, dict, Case]] = {
    "valid": ("track", json.dumps(track("valid")).encode(), {}, Case(200, "bronze")),
    "unicode": (
        "track",
        json.dumps(track("unicode", userId="ユーザー😀", properties={"category": "naïve ☃"})).encode(),
        {},
        Case(200, "bronze"),
    ),
    "no-event-name": (
        "track",
        json.dumps(track("no-event-name", event="")).encode(),
        {},
        Case(400, None, "track event without an event name"),
    ),
    "no-ids": ("track", json.dumps(track("no-ids", userId=None)).encode(), {}, Case(400, None, "missing both userId and anonymousId")),
    "infinity": (
        "track",
        json.dumps(track("infinity")).replace("10.0", "1e999").encode(),
        {},
        Case(400, None, "properties.price: number out of range"),
    ),
    "not-json": ("track", b'{"type": "track", "messageId": "not-json"', {}, Case(400, None, "not valid JSON")),
    "too-big": ("track", json.dumps(track("too-big", properties={"note": "x" * 40_000})).encode(), {}, Case(400, None, "limit is 32 KB")),
    "bad-gzip": ("track", b"not gzip at all", {"Content-Encoding": "gzip"}, Case(400, None, "not valid gzip")),
    "device-text": (
        "track",
        json.dumps(track("device-text", context={"device": "mobile"})).encode(),
        {},
        Case(200, "quarantine", "context.device must be a JSON object, got: mobile"),
    ),
    "future": (
        "track",
        json.dumps(track("future", timestamp=iso(NOW + timedelta(days=1)))).encode(),
        {},
        Case(200, "quarantine", "in the future"),
    ),
    "ancient": (
        "track",
        json.dumps(track("ancient", timestamp="1997-05-01T10:00:00Z")).encode(),
        {},
        Case(200, "quarantine", "older than 400 days"),
    ),
    "price-text": (
        "track",
        json.dumps(track("price-text", properties={"price": "cheap"})).encode(),
        {},
        Case(200, "quarantine", "properties.price is not a number"),
    ),
    "gzip": ("batch", gzip.compress(json.dumps({"batch": [track("gzip")]}).encode()), {"Content-Encoding": "gzip"}, Case(200, "bronze")),
    # A retry of "valid" with its timestamp on another date: a duplicate, kept once.
    "resent": ("track", json.dumps(track("valid", timestamp=iso(AN_HOUR_AGO - timedelta(days=1)))).encode(), {}, Case(200, "bronze")),
    "pii-identify": (
        "identify",
        json.dumps(
            {
                "messageId": "pii-identify",
                "userId": "cust_2",
                "timestamp": iso(AN_HOUR_AGO),
                "traits": {
                    "emailAddress": "ada@example.com",
                    "EMAIL_ADDRESS": "ada@example.com",
                    "phone_number": "5551234567",
                    " email": "ada@example.com",
                    "contact": {"email": "ada.l@example.org", "lastName": "Lovelace"},
                    "plan": "pro",
                },
            }
        ).encode(),
        {},
        Case(200, "bronze"),
    ),
    "pii-track": (
        "track",
        json.dumps(
            track(
                "pii-track",
                properties={"email": "ada@example.com", "phone": "+44 20 7946 0958"},
                context={"page": {"url": "https://shop.example/?email=ada%40example.net"}},
            )
        ).encode(),
        {},
        Case(200, "bronze"),
    ),
}
# One /v1/batch with a bad message among good ones: 200, and the bad one is listed and quarantined.
BATCH = [track("batch-ok-1"), {"type": "purchase", "messageId": "batch-unknown-type", "userId": "cust_1"}, track("batch-ok-2")]
BATCH_CASES = {
    "batch-ok-1": Case(200, "bronze"),
    "batch-unknown-type": Case(200, "quarantine", "batch[1]: unknown type 'purchase'"),
    "batch-ok-2": Case(200, "bronze"),
}
SDK_CASES = {
    "segment-identify": Case(200, "bronze"),
    "segment-no-event-name": Case(200, "quarantine", "track event without an event name"),
    "segment-pii-track": Case(200, "bronze"),
    "rudder-identify": Case(200, "bronze"),
    "rudder-track": Case(200, "bronze"),
    "rudder-no-event-name": Case(200, "quarantine", "track event without an event name"),
}
# Lines another producer wrote straight into the landing zone (no HTTP, so no status).
DROPPED = {
    "two-objects": (json.dumps(track("two-objects")) + json.dumps(track("two-objects-b"))).encode(),
    "not-utf8": json.dumps(track("not-utf8", properties={"category": "CATEGORY"})).encode().replace(b"CATEGORY", b"caf\xe9"),
}
DROPPED_REASONS = {"two-objects": "more than one JSON object on the line", "not-utf8": "line is not valid UTF-8"}


def _send_with_sdks(url: str) -> list[Exception]:
    errors: list[Exception] = []

    def on_error(error, _batch):
        errors.append(error)

    seg = segment.Client(KEY, host=url, on_error=on_error, upload_size=10)
    seg.identify("cust_3", {"email": "grace@example.com", "plan": "team"}, timestamp=AN_HOUR_AGO, message_id="segment-identify")
    seg.track("cust_3", "", {"product_id": "p9"}, timestamp=AN_HOUR_AGO, message_id="segment-no-event-name")
    seg.track(
        "cust_3", "Product Viewed", {"email": "ada@example.com", "product_id": "p9"}, timestamp=AN_HOUR_AGO, message_id="segment-pii-track"
    )
    seg.flush()
    seg.join()
    # RudderStack's SDK sends identify traits only in context.traits, gzipped.
    rudder = RudderClient(KEY, host=url, on_error=on_error, upload_size=10)
    rudder.identify(
        "cust_4", {"email": "Hedy@Example.com", "firstName": "Hedy", "plan": "pro"}, timestamp=AN_HOUR_AGO, message_id="rudder-identify"
    )
    rudder.track("cust_4", "Product Added", {"product_id": "p7", "quantity": 1}, timestamp=AN_HOUR_AGO, message_id="rudder-track")
    rudder.track("cust_4", "", {"product_id": "p7"}, timestamp=AN_HOUR_AGO, message_id="rudder-no-event-name")
    rudder.flush()
    rudder.join()
    return errors


def test_a_hostile_corpus_ends_in_bronze_or_quarantine_or_the_client_was_told(spark, tmp_path):
    events_dir = tmp_path / "landing" / "events"
    writer = LandingWriter(events_dir, roll_bytes=1_000_000, roll_seconds=3600, clock=FrozenClock(NOW))
    statuses: dict[str, tuple[int, str]] = {}
    with CollectorThread(create_app(CollectorConfig(write_keys={KEY: "web"}), writer, clock=FrozenClock(NOW))) as server:
        for name, (endpoint, body, headers, _) in RAW.items():
            answer = httpx.post(
                f"{server.url}/v1/{endpoint}",
                content=body,
                auth=(KEY, ""),
                timeout=10,
                headers={"Content-Type": "application/json", **headers},
            )
            statuses[name] = (answer.status_code, answer.text)
        answer = httpx.post(f"{server.url}/v1/batch", json={"batch": BATCH}, auth=(KEY, ""), timeout=10)
        batch_status, batch_body = answer.status_code, answer.json()
        sdk_errors = _send_with_sdks(server.url)
    (events_dir / "part-dropped.jsonl").write_bytes(b"\n".join(DROPPED.values()) + b"\n")

    assert {name: status for name, (status, _) in statuses.items()} == {name: case.status for name, (*_, case) in RAW.items()}
    for name, (status, text) in statuses.items():
        assert status == 200 or RAW[name][3].reason in text, (name, text)
    assert batch_status == 200 and [(r["index"], r["code"]) for r in batch_body["refused"]] == [(1, "invalid_event")]
    assert sdk_errors == [], "both SDKs saw only 200s"

    settings = load_settings()
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    run = run_stream(spark, lake, settings, source=str(events_dir), checkpoint=str(tmp_path / "ckpt"), clock=FrozenClock(NOW))

    bronze = {r.message_id: r.asDict() for r in lake.read("events").collect()}
    quarantine = [r.asDict() for r in lake.read("quarantine").collect()]
    reasons = {r["message_id"]: r["reason"] for r in quarantine}
    expected = {name: case for name, (*_, case) in RAW.items() if name != "resent"} | BATCH_CASES | SDK_CASES
    for message_id, case in expected.items():
        place = "bronze" if message_id in bronze else "quarantine" if message_id in reasons else None
        assert place == case.place, (message_id, place, reasons.get(message_id))
        if place == "quarantine":
            assert case.reason in reasons[message_id], (message_id, reasons[message_id])
    for name, reason in DROPPED_REASONS.items():
        assert sum(reason in r["reason"] for r in quarantine) == 1, name
    # Every landing line is accounted for: new in bronze, quarantined, or a duplicate of one in bronze.
    landed_lines = sum(len(p.read_bytes().splitlines()) for p in events_dir.glob("*.jsonl"))
    assert (len(bronze), len(quarantine), sum(b["duplicates"] for b in run.batches)) == (run.events, landed_lines - run.events - 1, 1)

    # No contact data in bronze; identify contacts reach `customers`, from traits or (RudderStack) context.traits.
    stored = json.dumps(list(bronze.values()), default=str)
    assert [value for value in CONTACT_VALUES + ("grace@example.com", "hedy@example.com", "Hedy") if value.lower() in stored.lower()] == []
    assert json.loads(bronze["rudder-identify"]["traits_json"]) == {"plan": "pro"}
    customers = {r.customer_id: r for r in lake.with_plain_contacts(lake.read("customers")).collect()}
    assert (customers[pid("cust_4")].email, customers[pid("cust_4")].first_name) == ("hedy@example.com", "Hedy")
    assert (customers[pid("cust_3")].email, customers[pid("cust_2")].email) == ("grace@example.com", "ada@example.com")
    assert customers[pid("cust_2")].last_name is None  # a nested contact.lastName is redacted, not a customer field
