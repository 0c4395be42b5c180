"""Consent and the diff as pure transforms on tiny inline DataFrames (real Spark)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakecdp.export.audience import (
    consent_status,
    effective_log,
    export_baseline,
    permanent_failures,
    plan_changes,
    route_to_destinations,
    segment_audience,
    with_identifier,
)
from lakecdp.export.identifiers import email_sha256, mailchimp_subscriber_hash, normalize_email, normalized_email_col
from lakecdp.lake.tables import table

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def customers(spark, rows):
    full = [(cid, f"retailer-{cid}", email, "Ada", None, "GB", None, None, opt_in, "crm", T0) for cid, email, opt_in in rows]
    return spark.createDataFrame(full, schema=table("customers").schema)


def email_facts(spark, rows):
    """(customer_id, event, timestamp[, properties_json, traits_json]) as bronze rows, recorded in a consent ledger as the
    stream records them, then each customer's latest email-marketing grant and withdrawal, as the planner reads them."""
    from lakecdp.privacy.consent import latest_email_facts
    from lakecdp.privacy.ledger import ConsentRules, entries_from_events

    names = table("events").schema.fieldNames()
    bronze = []
    for i, (customer_id, event, at, *json_fields) in enumerate(rows):
        properties, traits = (*json_fields, None, None)[:2]
        kind = "identify" if event is None else "track"
        values = {"message_id": f"m{i}", "type": kind, "event": event, "customer_id": customer_id, "user_id": customer_id}
        values |= {"timestamp": at, "received_at": at, "event_date": at.date(), "properties_json": properties, "traits_json": traits}
        values |= {"source_file": "file:t.jsonl"}
        bronze.append(tuple(values.get(name) for name in names))
    events = spark.createDataFrame(bronze, schema=table("events").schema)
    return latest_email_facts(entries_from_events(events, ConsentRules(), T0 + timedelta(days=9)))


def test_consent_blocks_each_reason_and_a_later_opt_in_restores(spark):
    people = customers(
        spark,
        [
            ("ok", " Ada@Example.com ", True),
            ("no_opt_in", "b@example.com", False),
            ("opt_in_unknown", "c@example.com", None),
            ("no_email", None, True),
            ("bad_email", "not-an-address", True),
            ("unsubscribed", "d@example.com", True),
            ("resubscribed", "e@example.com", True),
            ("bounced", "F@example.com", True),
            ("withdrew", "g@example.com", True),
            ("traits_withdrew", "h@example.com", True),
            ("same_instant", "i@example.com", True),
        ],
    )
    events = email_facts(
        spark,
        [
            ("unsubscribed", "Subscribed", T0),
            ("unsubscribed", "Unsubscribed", T0 + timedelta(days=1)),
            ("resubscribed", "Unsubscribed", T0),
            ("resubscribed", "Subscribed", T0 + timedelta(days=1)),
            ("ok", "Product Viewed", T0 + timedelta(days=2)),
            # Withdrawals the consent ledger records besides an opt-out event: a consent update, identify traits.
            ("withdrew", "Subscribed", T0),
            ("withdrew", "Consent Updated", T0 + timedelta(days=1), '{"purpose": "email_marketing", "status": "Withdrawn"}'),
            ("withdrew", "Consent Updated", T0 + timedelta(days=2), '{"purpose": "profiling", "status": "granted"}'),
            ("traits_withdrew", None, T0 + timedelta(days=1), None, '{"consent": {"email_marketing": false}}'),
            ("same_instant", "Subscribed", T0),
            ("same_instant", "Unsubscribed", T0),  # the ledger's tie: withdrawn wins
        ],
    )
    suppressions = spark.createDataFrame(
        [(email_sha256("f@example.com"), None, "bounced", "mailchimp", T0)], schema=table("export_suppressions").schema
    )
    result = consent_status(people, events, suppressions)
    expected = spark.createDataFrame(
        [
            ("ok", "ada@example.com", None),
            ("no_opt_in", "b@example.com", "no marketing opt-in"),
            ("opt_in_unknown", "c@example.com", "no marketing opt-in"),
            ("no_email", None, "no valid email"),
            ("bad_email", None, "no valid email"),
            ("unsubscribed", "d@example.com", "unsubscribed after latest opt-in"),
            ("resubscribed", "e@example.com", None),
            ("bounced", "f@example.com", "suppressed: bounced"),
            ("withdrew", "g@example.com", "unsubscribed after latest opt-in"),
            ("traits_withdrew", "h@example.com", "unsubscribed after latest opt-in"),
            ("same_instant", "i@example.com", "unsubscribed after latest opt-in"),
        ],
        "customer_id string, email_norm string, block_reason string",
    )
    assertDataFrameEqual(result.select("customer_id", "email_norm", "block_reason"), expected, checkRowOrder=False)


def log_rows(spark, rows):
    """(batch, customer, action, state, payload_hash, retryable, planned_day) -> export_log rows for destination d, segment s."""
    full = [
        (
            "run",
            "d",
            "s",
            batch,
            0,
            "upsert",
            batch,
            cid,
            action,
            f"id-{cid}",
            payload,
            state,
            None if state != "failed" else "why",
            retryable,
            None,
            T0 + timedelta(days=day),
            T0 + timedelta(days=day),
        )
        for batch, cid, action, state, payload, retryable, day in rows
    ]
    return spark.createDataFrame(full, schema=table("export_log").schema)


def test_the_diff_creates_updates_removes_and_holds_permanent_failures(spark):
    log = log_rows(
        spark,
        [
            ("b1", "same", "create", "pending", "h1", None, 0),
            ("b1", "same", "create", "sent", "h1", None, 0),
            ("b1", "changed", "create", "pending", "h1", None, 0),
            ("b1", "changed", "create", "sent", "h1", None, 0),
            ("b1", "left", "create", "pending", "h1", None, 0),
            ("b1", "left", "create", "sent", "h1", None, 0),
            ("b1", "gone_before", "create", "sent", "h1", None, 0),
            ("b2", "gone_before", "remove", "sent", "h1", None, 1),
            ("b1", "bad", "create", "pending", "h1", None, 0),
            ("b1", "bad", "create", "failed", "h1", False, 0),
            ("b1", "flaky", "create", "pending", "h1", None, 0),
            ("b1", "flaky", "create", "failed", "h1", True, 0),
            ("b3", "in_flight", "create", "pending", "h1", None, 2),  # an unfinished batch counts as held there
        ],
    )
    desired = spark.createDataFrame(
        [
            ("d", "s", "same", "id-same", "h1", "same@x.co"),
            ("d", "s", "changed", "id-changed", "h2", "changed@x.co"),
            ("d", "s", "new", "id-new", "h1", "new@x.co"),
            ("d", "s", "bad", "id-bad", "h1", "bad@x.co"),
            ("d", "s", "flaky", "id-flaky", "h1", "flaky@x.co"),
            ("d", "s", "gone_before", "id-gone_before", "h1", "g@x.co"),
            ("d", "s", "in_flight", "id-in_flight", "h1", "i@x.co"),
        ],
        "destination string, segment string, customer_id string, identifier string, payload_hash string, email_norm string",
    )
    for column in ("first_name", "last_name", "country", "city"):
        desired = desired.withColumn(column, F.lit(None).cast("string"))
    effective = effective_log(log)
    changes = plan_changes(desired, export_baseline(effective), permanent_failures(effective))
    got = changes.select("customer_id", "action", "identifier", "email_norm", "is_held")
    expected = spark.createDataFrame(
        [
            ("changed", "update", "id-changed", "changed@x.co", False),
            ("new", "create", "id-new", "new@x.co", False),
            ("left", "remove", "id-left", None, False),
            ("bad", "create", "id-bad", "bad@x.co", True),
            ("flaky", "create", "id-flaky", "flaky@x.co", False),
            ("gone_before", "create", "id-gone_before", "g@x.co", False),
        ],
        "customer_id string, action string, identifier string, email_norm string, is_held boolean",
    )
    assertDataFrameEqual(got, expected, checkRowOrder=False)

    full = plan_changes(desired, export_baseline(effective), permanent_failures(effective), full=True)
    assert {r["customer_id"]: r["action"] for r in full.filter(~F.col("is_held")).collect()} == {
        "same": "update",
        "changed": "update",
        "new": "create",
        "left": "remove",
        "bad": "create",
        "flaky": "create",
        "gone_before": "create",
        "in_flight": "update",
    }


def test_routing_gives_each_destination_its_own_identifier(spark):
    membership = spark.createDataFrame(
        [("s", "c1", T0, "v1", None, T0), ("s", "ghost", T0, "v1", None, T0)], schema=table("segment_membership").schema
    )
    consent = consent_status(
        customers(spark, [("c1", "A@x.co", True)]),
        email_facts(spark, []),
        spark.createDataFrame([], schema=table("export_suppressions").schema),
    )
    targets = spark.createDataFrame(
        [("mc", "s", "subscriber_hash"), ("hook", "s", "email_sha256"), ("braze", "s", "customer_id")],
        "destination string, segment string, identifier_kind string",
    )
    routed = with_identifier(route_to_destinations(segment_audience(membership, consent, ["s"]), targets))
    got = {(r["destination"], r["customer_id"]): (r["identifier"], r["block_reason"]) for r in routed.collect()}
    assert got[("mc", "c1")] == (mailchimp_subscriber_hash("a@x.co"), None)
    assert got[("hook", "c1")] == (email_sha256("a@x.co"), None)
    assert got[("braze", "c1")] == ("c1", None)
    assert got[("braze", "ghost")][1] == "no customer record"


def test_an_address_is_normalized_the_same_in_spark_and_in_python(spark):
    """The dispatcher hashes addresses in Python; the export, the consent gate and erasure in Spark."""
    values = ["  Ada@Example.COM ", "ada@example.com", "", "   ", None, "no-at-sign.example.com", "a@b", "a b@c.de", "a@@b.co", "x@y.z"]
    frame = spark.createDataFrame([(n, v) for n, v in enumerate(values)], "n int, email string")
    in_spark = {r.n: r.normalized for r in frame.select("n", normalized_email_col("email").alias("normalized")).collect()}
    assert in_spark == {n: normalize_email(v) for n, v in enumerate(values)}


def test_the_spark_form_of_the_email_consent_rule_decides_as_the_python_one(spark):
    """Every combination of the rule's facts: block_reason_column (export, quality gate, consent report) and
    email_consent.block_reason (content API, trigger dispatch, preference centre) give the same reason."""
    import itertools

    from lakecdp.privacy.consent import block_reason_column
    from lakecdp.privacy.email_consent import block_reason

    instants = (None, T0, T0 + timedelta(days=1))
    cases = [
        (f"c{i}", record, opt_in, email, last_in, last_out, suppression, held)
        for i, (record, opt_in, email, last_in, last_out, suppression, held) in enumerate(
            itertools.product(
                (True, False), (True, False, None), ("a@example.com", None), instants, instants, (None, "bounced"), (False, True)
            )
        )
    ]
    frame = spark.createDataFrame(
        cases,
        "customer_id string, has_record boolean, marketing_opt_in boolean, email_norm string, last_opt_in_at timestamp, "
        "last_opt_out_at timestamp, suppression_reason string, held_out boolean",
    )
    for require_email in (True, False):
        column = block_reason_column(
            has_record=F.col("has_record"), require_email=require_email, suppression=F.col("suppression_reason"), held_out=F.col("held_out")
        )
        spark_reasons = {r.customer_id: r.reason for r in frame.select("customer_id", column.alias("reason")).collect()}
        python_reasons = {
            c: block_reason(o, i, u, has_record=h, email_norm=e, require_email=require_email, suppression=s, held_out=held)
            for c, h, o, e, i, u, s, held in cases
        }
        assert spark_reasons == python_reasons
        assert len(set(python_reasons.values())) == (7 if require_email else 6)  # every reason, and None, occurs


def test_the_quality_gates_consent_blocks_a_suppressed_address_as_the_export_does(spark):
    """consent_block_reason (what the export quality gate re-derives) with the suppression list: the same
    reasons consent_status gives the planner, for the same people."""
    from lakecdp.privacy.consent import consent_block_reason

    people = customers(spark, [("ok", "a@example.com", True), ("bounced", " B@Example.com", True), ("no_opt_in", "c@example.com", False)])
    suppressions = spark.createDataFrame(
        [(email_sha256("b@example.com"), None, "bounced", "klaviyo", T0)], schema=table("export_suppressions").schema
    )
    events = email_facts(spark, [("ok", "Subscribed", T0)])
    gate = consent_block_reason(people, events, suppressions=suppressions)
    planner = consent_status(people, events, suppressions)
    expected = {"ok": None, "bounced": "suppressed: bounced", "no_opt_in": "no marketing opt-in"}
    assert {r.customer_id: r.block_reason for r in gate.collect()} == expected
    assert {r.customer_id: r.block_reason for r in planner.collect()} == expected


def test_the_spark_form_of_the_latest_email_facts_reads_the_ledger_as_the_python_one(spark):
    """latest_email_facts over ledger rows: the Spark form (export, gate, report, the dispatcher's bronze path) and the
    Python one (content API, the dispatcher's store path, preference centre) agree, CRM facts and linked devices included."""
    from lakecdp.privacy.consent import latest_email_facts as spark_form
    from lakecdp.privacy.email_consent import latest_email_facts as python_form

    day = timedelta(days=1)
    facts = [
        ("c1", "email_marketing", "granted", T0, "event:Subscribed"),
        ("c1", "email_marketing", "withdrawn", T0 + day, "esp://klaviyo"),
        ("c2", "email_marketing", "granted", T0, "import:crm.csv"),  # the CRM's fact: the rule reads the flag itself
        ("c2", "email_marketing", "withdrawn", T0, "event:Unsubscribed"),
        ("c3", "profiling", "withdrawn", T0, "event:Consent Updated"),
        ("device-9", "email_marketing", "granted", T0 + 2 * day, "event:Subscribed"),  # before sign-in, on c3's device
        ("device-8", "email_marketing", "withdrawn", T0, "identify traits"),  # a device nobody is linked to
    ]
    rows = [dict(zip(("customer_id", "purpose", "status", "recorded_at", "source"), f)) for f in facts]
    ledger = spark.createDataFrame(
        [(f"e{i}", c, p, "email", s, at, src, "proof", T0) for i, (c, p, s, at, src) in enumerate(facts)],
        schema=table("consent_ledger").schema,
    )
    links = spark.createDataFrame([("device-9", "c3", T0, "identify", True, None)], schema=table("identity_links").schema)
    got = {r.customer_id: (r.last_opt_in_at, r.last_opt_out_at) for r in spark_form(ledger, links).collect()}
    utc = {c: tuple(None if t is None else t.replace(tzinfo=UTC) for t in pair) for c, pair in got.items()}
    assert utc == python_form(rows, {"device-9": "c3"})
    assert utc == {"c1": (T0, T0 + day), "c2": (None, T0), "c3": (T0 + 2 * day, None), "device-8": (None, T0)}


def test_the_ledgers_latest_fact_is_the_same_in_spark_and_in_python(spark):
    """ledger.current_consent (scoring's refusals, the gate) and privacy.facts.latest_facts (content API, preference
    centre, consent report): the latest fact per customer and purpose, withdrawn winning a tie."""
    from lakecdp.privacy.facts import latest_facts
    from lakecdp.privacy.ledger import current_consent

    day = timedelta(days=1)
    facts = [
        ("c1", "profiling", "granted", T0, "event:Consent Updated"),
        ("c1", "profiling", "withdrawn", T0 + day, "identify traits"),
        ("c2", "profiling", "withdrawn", T0, "preference_centre"),
        ("c2", "profiling", "granted", T0, "event:Consent Updated"),  # the same instant: withdrawn wins
        ("c3", "profiling", "withdrawn", T0, "identify traits"),
        ("c3", "profiling", "granted", T0 + 2 * day, "preference_centre"),
        ("c4", "personalization", "withdrawn", T0, "identify traits"),  # another purpose: no profiling fact
    ]
    ledger = spark.createDataFrame(
        [(f"e{i}", c, p, "email", s, at, src, "proof", T0) for i, (c, p, s, at, src) in enumerate(facts)],
        schema=table("consent_ledger").schema,
    )
    rows = [dict(zip(("customer_id", "purpose", "status", "recorded_at", "source"), f)) for f in facts]
    spark_form = {r.customer_id: (r.status, r.recorded_at.replace(tzinfo=UTC)) for r in current_consent(ledger, "profiling").collect()}
    python_form = {c: (f["status"], f["recorded_at"]) for c, f in latest_facts(rows, "profiling").items()}
    assert spark_form == python_form == {"c1": ("withdrawn", T0 + day), "c2": ("withdrawn", T0), "c3": ("granted", T0 + 2 * day)}
