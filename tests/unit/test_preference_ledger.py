"""The consent ledger's facts from preference-centre events: their source and proof, and who may claim them (real Spark, inline rows)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from lakecdp.lake.tables import table
from lakecdp.privacy.ledger import ConsentRules, entries_from_events

AT = datetime(2026, 11, 2, 12, 0, 5, tzinfo=UTC)


def bronze(message_id: str, event: str, *, source: str | None, properties: dict | None = None) -> tuple:
    values = {name: None for name in table("events").columns}
    values.update(
        message_id=message_id,
        type="track",
        event=event,
        customer_id="pc_" + "a" * 32,
        timestamp=AT,
        received_at=AT,
        properties_json=json.dumps(properties or {}),
        context_json=None if source is None else json.dumps({"source": source}),
        source_file="landing/part-1.jsonl",
        event_date=AT.date(),
    )
    return tuple(values.values())


def test_only_the_centres_own_events_carry_a_link_proof(spark):
    withdrawn = {"status": "withdrawn", "channel": "email", "link_id": "feedc0de"}
    rows = [
        bronze("m1", "Unsubscribed", source="preference_centre", properties={"purpose": "email_marketing", **withdrawn}),
        bronze("m2", "Consent Updated", source="preference_centre", properties={"purpose": "personalization", **withdrawn}),
        # Any sender can put a link id in its properties; only the collector decides context.source.
        bronze("m3", "Consent Updated", source="web", properties={"purpose": "profiling", **withdrawn}),
        bronze("m4", "Unsubscribed", source="preference_centre"),  # no link id: nothing to prove with
        bronze("m5", "Product Viewed", source=None),
    ]
    events = spark.createDataFrame(rows, table("events").schema)
    facts = entries_from_events(events, ConsentRules(), AT).select("purpose", "status", "source", "proof").collect()
    assert sorted(tuple(f) for f in facts) == [
        ("email_marketing", "withdrawn", "event:Unsubscribed", "message:m4"),
        ("email_marketing", "withdrawn", "preference_centre", "preference link feedc0de submitted 2026-11-02T12:00:05Z; message:m1"),
        ("personalization", "withdrawn", "preference_centre", "preference link feedc0de submitted 2026-11-02T12:00:05Z; message:m2"),
        ("profiling", "withdrawn", "event:Consent Updated", "message:m3"),
    ]
