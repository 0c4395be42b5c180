"""The flush's driver twins of the contacts fold and the consent ledger equal Spark's.

`identify_contacts` + `fold_contact_rows` (lakecdp/events/contacts.py) and `entries_of_rows`
(lakecdp/privacy/ledger.py) let the stream's flush write an identify's contacts and a consent
event's ledger entries without a Spark job. Hypothesis draws identifies and consent events whose
contact traits, consent traits and consent properties vary the most (key spellings, case and
spaces, other JSON types, traits in context, repeated keys, instants shared by two identifies,
stored rows older and newer than the identifies); every result the twins give must equal Spark's.
A result they refuse (NotExact) goes to Spark in the stream, so it is not compared.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pyspark.sql import functions as F

from lakecdp.events.contacts import fold_contact_rows, fold_contacts, identify_contacts
from lakecdp.events.ingest import prepare_batch
from lakecdp.events.json_text import NotExact, loads
from lakecdp.lake.tables import CONSENT_LEDGER, CUSTOMERS, EVENTS
from lakecdp.online.executor import to_us
from lakecdp.privacy.ledger import ConsentRules, entries_from_events, entries_of_rows
from lakecdp.privacy.pseudonyms import Pseudonymizer
from tests.integration.test_online_bronze import PSEUDONYMS, RECEIVED, SETTINGS

pytestmark = pytest.mark.integration

RULES = ConsentRules()
NOW = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
_CONTACT_TIMES = ("email_at", "first_name_at", "last_name_at", "at")

emails = st.sampled_from([" Ada@Example.com ", "ada@example.com", "b@shop.example", "ÄDA@x.de", "", 5, None, {"a": 1}, ["x"]])
names = st.sampled_from(["Ada", "Grace", " Lin ", "日本", "🙂", 7, None, {"n": "x"}])
contact_keys = {
    "email": ["email", "Email", "EMAIL_ADDRESS", "emailAddress", "mail", " e-mail"],
    "first": ["first_name", "firstName", "FIRST NAME"],
    "last": ["lastName", "last.name"],
}
flags = st.sampled_from([True, False, "True", "false", "yes", 1, None, {"x": True}])
purposes = st.sampled_from(["email_marketing", "email_marketing", "personalization", "profiling", "enrichment", "sms", None, 3])
instants = st.integers(0, 40).map(lambda m: (RECEIVED - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ"))


@st.composite
def traits(draw) -> dict:
    found: dict = {}
    for kind, value in (("email", emails), ("first", names), ("last", names)):
        for key in draw(st.lists(st.sampled_from(contact_keys[kind]), max_size=2, unique=True)):
            found[key] = draw(value)
    if draw(st.booleans()):
        found["consent"] = draw(st.dictionaries(purposes.filter(lambda p: isinstance(p, str)), flags, max_size=3) | st.just("text"))
    if draw(st.booleans()):
        found["plan"] = "gold"
    return found


@st.composite
def messages(draw) -> dict:
    kind = draw(st.sampled_from(["identify", "identify", "Subscribed", "Unsubscribed", "Consent Updated", "Consent Updated"]))
    message: dict = {"messageId": f"m-{draw(st.integers(0, 10**9))}", "timestamp": draw(instants)}
    message["userId"] = draw(st.sampled_from(["cust_1", "cust_2", "é-ü", PSEUDONYMS.of("cust_2")]))
    if kind == "identify":
        message["type"] = "identify"
        drawn = draw(traits())
        where = draw(st.sampled_from(["top", "top", "context", "both"]))
        if where in ("top", "both"):
            message["traits"] = drawn
        if where in ("context", "both"):
            message["context"] = {"traits": draw(traits()) if where == "both" else drawn}
    else:
        message |= {"type": "track", "event": kind}
        stated = {"purpose": purposes, "status": st.sampled_from(["granted", "WITHDRAWN", "withdrawn", "maybe", None, 1])}
        message["properties"] = draw(
            st.fixed_dictionaries(
                stated if kind == "Consent Updated" and draw(st.booleans()) else {},
                optional={
                    **({} if kind == "Consent Updated" else stated),
                    "granted": flags,
                    "channel": st.sampled_from(["sms", "", None, 2]),
                    "link_id": st.sampled_from(["lnk_1", None, 4]),
                },
            )
        )
    if draw(st.booleans()):
        message.setdefault("context", {})["source"] = draw(st.sampled_from(["preference_centre", "web", 9]))
    return message


@st.composite
def lines(draw) -> tuple[bytes, str]:
    line = json.dumps(draw(messages()), ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:  # a repeated key
        line = line.replace('"timestamp"', '"plan": 1, "plan": 2, "timestamp"', 1)
    return line.encode(), draw(st.sampled_from(["landing/1.jsonl", "esp://mailchimp"]))


stored = st.fixed_dictionaries(
    {
        "external_id": st.sampled_from(["crm-1", None]),
        "email": st.sampled_from(["old@example.com", None]),
        "first_name": st.sampled_from(["Old", None]),
        "last_name": st.sampled_from(["Name", None]),
        "country": st.sampled_from(["DE", None]),
        "marketing_opt_in": st.sampled_from([True, None]),
        "source": st.sampled_from(["crm", "identify"]),
        "minutes_ago": st.integers(0, 60),
    }
)


def valid_rows(spark, raws: list[tuple[bytes, str]]):
    """Spark's parsed batch of the lines: (PreparedBatch, bronze rows by line index, times in µs)."""
    frame = spark.createDataFrame([(raw, f"{source}#{n}") for n, (raw, source) in enumerate(raws)], "raw binary, source_file string")
    batch = prepare_batch(
        frame.select(F.col("raw").cast("string").alias("raw"), "source_file"),
        received_at=RECEIVED,
        settings=SETTINGS,
        pseudonyms=PSEUDONYMS,
    )
    columns = [F.unix_micros(c).alias(c) if c in ("timestamp", "received_at", "sent_at") else F.col(c) for c in EVENTS.columns]
    rows = {int(r.source_file.rsplit("#", 1)[1]): r.asDict() for r in batch.valid.select(*columns).collect()}
    return batch, rows


def python_contacts(raws: list[tuple[bytes, str]], rows: dict[int, dict], pseudonyms: Pseudonymizer) -> dict[str, dict]:
    """identify_contacts per customer, in landing order; a customer it refuses is left out."""
    by_customer: dict[str, list] = {}
    for n in sorted(rows):
        if rows[n]["type"] == "identify":
            by_customer.setdefault(rows[n]["customer_id"], []).append((raws[n][0].decode(), rows[n]["timestamp"]))
    found = {}
    for identifies in by_customer.values():
        try:
            found |= {c["customer_id"]: c for c in identify_contacts([(*loads(raw), at) for raw, at in identifies], pseudonyms)}
        except NotExact:
            continue
    return found


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.lists(lines(), min_size=10, max_size=40, unique_by=lambda line: json.loads(line[0])["messageId"]),
    st.lists(stored, min_size=3, max_size=3),
)
def test_the_contacts_and_ledger_entries_built_in_python_are_sparks(spark, raws, stored_rows):
    batch, rows = valid_rows(spark, raws)
    try:
        spark_contacts = batch.contacts
        says = {
            r.customer_id: r.asDict()
            for r in spark_contacts.select("*", *[F.unix_micros(c).alias(f"_{c}") for c in _CONTACT_TIMES]).collect()
        }
        built = python_contacts(raws, rows, PSEUDONYMS)
        for customer, contact in built.items():
            expected = {k: says[customer][f"_{k}"] if k in _CONTACT_TIMES else says[customer][k] for k in contact}
            assert contact == expected, [raws[n] for n in rows if rows[n]["customer_id"] == customer]

        # The fold against stored rows, older and newer than the identifies.
        customers = sorted(built)
        existing = [
            {"customer_id": c, "city": None, "signup_date": None, "updated_at": to_us(RECEIVED - timedelta(minutes=s["minutes_ago"]))}
            | {k: v for k, v in s.items() if k != "minutes_ago"}
            for c, s in zip(customers, stored_rows)
        ]
        existing_frame = spark.createDataFrame(
            [{**r, "updated_at": datetime.fromtimestamp(r["updated_at"] / 1e6, UTC)} for r in existing] or [], CUSTOMERS.schema
        )
        spark_folded = fold_contacts(spark_contacts.filter(F.col("customer_id").isin(customers)), existing_frame)
        folded = {r["customer_id"]: r for r in fold_contact_rows([built[c] for c in customers], {r["customer_id"]: r for r in existing})}
        for row in spark_folded.withColumn("updated_at", F.unix_micros("updated_at")).collect():
            assert folded[row.customer_id] == row.asDict(), row.customer_id

        # The ledger: Spark's entries of the batch against the entries of each row the twin does not refuse.
        refused, entries = set(), []
        for row in rows.values():
            try:
                entries += entries_of_rows([row], RULES, to_us(NOW))
            except NotExact:
                refused.add(row["message_id"])
        spark_entries = entries_from_events(batch.valid, RULES, NOW).select(
            *[F.unix_micros(c).alias(c) if c in ("recorded_at", "ingested_at") else F.col(c) for c in CONSENT_LEDGER.columns]
        )
        expected = [r.asDict() for r in spark_entries.collect() if r.proof.rsplit("message:", 1)[1] not in refused]
        assert sorted(entries, key=lambda e: e["entry_id"]) == sorted(expected, key=lambda e: e["entry_id"])
    finally:
        batch.release()


def test_generated_identifies_and_consent_events_need_no_spark(spark):
    """What senders normally send: every identify's contacts and every consent fact come from the twins, as Spark's."""
    from lakecdp.generate import GeneratorSettings, generate_dataset

    dataset = generate_dataset(GeneratorSettings(customers=60, days=3, seed=11, end=RECEIVED))
    facts = [e for e in dataset.events if e["type"] == "identify"]
    assert len(facts) >= 20
    sent = {"type": "track", "userId": "cust_1", "timestamp": "2026-11-01T11:00:00Z"}
    facts += [
        sent | {"messageId": "c1", "event": "Subscribed"},
        sent | {"messageId": "c2", "event": "Unsubscribed", "properties": {"list": "news"}},
        sent | {"messageId": "c3", "event": "Consent Updated", "properties": {"purpose": "profiling", "status": "withdrawn"}},
        sent
        | {
            "messageId": "c4",
            "event": "Consent Updated",
            "properties": {"purpose": "email_marketing", "granted": True, "link_id": "lnk_9"},
            "context": {"source": "preference_centre"},
        },
        {
            "type": "identify",
            "messageId": "c5",
            "userId": "cust_2",
            "timestamp": "2026-11-01T11:00:00Z",
            "traits": {"consent": {"personalization": False}},
        },
    ]
    raws = [(json.dumps(e).encode(), "landing/1.jsonl") for e in facts]
    batch, rows = valid_rows(spark, raws)
    try:
        assert len(rows) == len(raws)
        identifies = [(*loads(raws[n][0].decode()), rows[n]["timestamp"]) for n in sorted(rows) if rows[n]["type"] == "identify"]
        built = identify_contacts(identifies, PSEUDONYMS)
        spark_contacts = batch.contacts.collect()
        assert len(built) == len(spark_contacts) > 0
        entries = entries_of_rows(rows.values(), RULES, to_us(NOW))
        assert len(entries) == entries_from_events(batch.valid, RULES, NOW).count() == 5
    finally:
        batch.release()
