"""Comparing two lakes built from the same landing zone (a cluster run, an S3 lake) with a local run."""

from __future__ import annotations

import pytest


def table_rows(lake, name: str, order: list[str]) -> list[dict]:
    """The table's rows in key order; doubles to 9 decimals (sums over other partitions differ in the last bits)."""
    rows = lake.read(name).orderBy(*order).collect()
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in row.asDict(recursive=True).items()} for row in rows]


def assert_same_pipeline_tables(lake, expected) -> None:
    """Stream, train and score gave `lake` the tables they gave `expected`: events, links, profiles,
    memberships equal; every customer scored, in the same cluster, with the same intent to 1e-9."""
    for name, order in (
        ("events", ["message_id"]),
        ("identity_links", ["anonymous_id", "customer_id"]),
        ("profile_features", ["customer_id"]),
        ("segment_membership", ["segment", "customer_id"]),
    ):
        assert table_rows(lake, name, order) == table_rows(expected, name, order), name
    expected_scores = {r["customer_id"]: r for r in table_rows(expected, "profile_scores", ["customer_id"])}
    scores = {r["customer_id"]: r for r in table_rows(lake, "profile_scores", ["customer_id"])}
    assert scores.keys() == expected_scores.keys() and len(scores) > 0
    for customer, row in scores.items():
        assert row["cluster_id"] == expected_scores[customer]["cluster_id"], customer
        assert row["intent_probability"] == pytest.approx(expected_scores[customer]["intent_probability"], abs=1e-9), customer


def ingest_and_refresh(lake, settings, segments, now, lines) -> None:
    """Raw event lines into bronze, then identities, profiles and membership of the customers they touch (the batch path)."""
    import json

    from pyspark.sql import functions as F

    from lakecdp.events.ingest import ingest_lines
    from lakecdp.flows.micro_batch import refresh_customers, touched_customers, update_identity_links
    from lakecdp.privacy.ledger import consent_rules, entries_from_events, record_consent

    df = lake.spark.createDataFrame([(raw, "t.jsonl") for raw in lines], "raw string, source_file string")
    ingest_lines(lake, df, received_at=now, settings=settings.events)
    batch = lake.read("events").filter(F.col("message_id").isin([json.loads(x)["messageId"] for x in lines]))
    record_consent(lake, entries_from_events(batch, consent_rules(settings.privacy, settings.esp), now))  # as the stream's batch does
    customers = touched_customers(lake, batch, update_identity_links(lake, batch))
    refresh_customers(lake, segments, now, customers)
