"""Validation and flattening on inline lines (real Spark, tiny data)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from lakecdp.events.normalize import filter_new_messages, parse_lines, to_bronze, to_quarantine, with_rejection_reason
from lakecdp.privacy.pseudonyms import PATTERN, Pseudonymizer

RECEIVED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
KEY = b"unit-test pseudonym key of 32+ bytes"
PSEUDONYMS = Pseudonymizer(KEY)


def event(**overrides):
    base = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m1",
        "userId": "cust_1",
        "anonymousId": "anon_1",
        "timestamp": "2026-11-01T11:00:00.000Z",
        "properties": {"category": "shoes", "price": 59.9, "product_id": "p1"},
        "context": {"device": {"type": "mobile"}, "location": {"country": "DE", "city": "Berlin"}, "timezone": "Europe/Berlin"},
    }
    base.update(overrides)
    return json.dumps({k: v for k, v in base.items() if v is not None})


def check(spark, lines):
    df = spark.createDataFrame([(line, "f.jsonl") for line in lines], "raw string, source_file string")
    parsed = parse_lines(df, received_at=RECEIVED)
    return with_rejection_reason(parsed, max_future_skew=timedelta(minutes=5), max_age=timedelta(days=400))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (event(), None),
        ('{"type": "track", ', "not a JSON object"),
        ("[1, 2]", "not a JSON object"),
        (event(messageId=None), "missing messageId"),
        (event(messageId="  "), "missing messageId"),
        (event(type="purchase"), "unknown type 'purchase'"),
        (event(event=None), "track event without an event name"),
        (event(userId=None, anonymousId=None), "missing both userId and anonymousId"),
        (event(timestamp=None), "missing timestamp"),
        (event(timestamp="yesterday"), "timestamp is not ISO-8601"),
        (event(timestamp="2026-11-02T12:00:00Z"), "in the future"),
        (event(timestamp="2020-01-01T00:00:00Z"), "older than 400 days"),
        (event(properties={"price": "cheap"}), "properties.price is not a number"),
        (event(properties={"note": "x" * 40_000}), "larger than 32 KB"),
        (event(userId="ユーザー😀", properties={"category": "naïve ☃"}), None),
        (event(type="identify", event=None), None),
        (None, "not a JSON object"),
        (event() + event(messageId="m2"), "more than one JSON object on the line"),
        (event() + " " + event(messageId="m2"), "more than one JSON object on the line"),
        (event(properties={"search_query": "socks}{shoes"}), None),
        (event(context={"device": "mobile"}), "context.device must be a JSON object, got: mobile"),
        (event(properties="cheap shoes"), "properties must be a JSON object, got: cheap shoes"),
    ],
)
def test_rejection_reasons(spark, line, reason):
    row = check(spark, [line]).first()
    if reason is None:
        assert row.reason is None
    else:
        assert row.reason is not None and reason in row.reason


def test_bronze_flattens_the_segment_shape(spark):
    checked = check(
        spark,
        [
            event(),
            event(
                messageId="m2",
                type="page",
                event=None,
                name="Product",
                properties={"url": "https://shop.example/p1", "time_on_page_s": 12.5, "scroll_depth_pct": 80},
            ),
        ],
    )
    rows = {r.message_id: r for r in to_bronze(checked, PSEUDONYMS).collect()}
    assert rows["m1"].customer_id == PSEUDONYMS.of("cust_1")
    assert rows["m1"].price == pytest.approx(59.9)
    assert rows["m1"].device_type == "mobile" and rows["m1"].country == "DE"
    assert rows["m1"].event_date.isoformat() == "2026-11-01"
    assert rows["m2"].event == "Page Viewed" and rows["m2"].page_name == "Product"
    assert rows["m2"].scroll_depth_pct == 80 and rows["m2"].time_on_page_s == pytest.approx(12.5)


def test_anonymous_events_are_keyed_by_anonymous_id(spark):
    checked = check(spark, [event(userId=None)])
    assert to_bronze(checked, PSEUDONYMS).first().customer_id == PSEUDONYMS.of("anon_1")


def test_bronze_holds_pseudonyms_only_and_they_match_the_python_hmac(spark):
    ids = ["cust_1", "Ünïcode-ü", "x" * 200, "42", PSEUDONYMS.of("already")]
    lines = [event(messageId=f"m{i}", userId=u, anonymousId=f"a{i}", previousId=f"p{i}") for i, u in enumerate(ids)]
    rows = {r.message_id: r for r in to_bronze(check(spark, lines), PSEUDONYMS).collect()}
    for i, user in enumerate(ids):
        row = rows[f"m{i}"]
        assert row.user_id == row.customer_id == PSEUDONYMS.of(user)
        assert (row.anonymous_id, row.previous_id) == (PSEUDONYMS.of(f"a{i}"), PSEUDONYMS.of(f"p{i}"))
        assert PATTERN.match(row.customer_id)
    # HMAC-SHA256 as RFC 2104 defines it (the stdlib's), truncated to 128 bits
    assert PSEUDONYMS.of("cust_1") == "pc_" + hmac.new(KEY, b"cust_1", hashlib.sha256).hexdigest()[:32]
    # an id that already is a pseudonym passes through; another key gives another pseudonym
    assert rows["m4"].customer_id == PSEUDONYMS.of("already")
    assert Pseudonymizer(b"another key, also thirty-two bytes").of("cust_1") != PSEUDONYMS.of("cust_1")


def test_a_line_of_invalid_utf8_is_quarantined_readably_with_its_bytes(spark):
    import base64

    from pyspark.sql import functions as F

    line = b'{"type": "track", "event": "Product Viewed", "messageId": "m\xff1", "userId": "u", "timestamp": "2026-11-01T11:00:00Z"}'
    df = spark.createDataFrame([(bytearray(line), "f.jsonl")], "raw binary, source_file string").withColumn(
        "raw", F.col("raw").cast("string")
    )
    checked = with_rejection_reason(
        parse_lines(df, received_at=RECEIVED), max_future_skew=timedelta(minutes=5), max_age=timedelta(days=400)
    )
    [row] = to_quarantine(checked, quarantined_at=RECEIVED).toArrow().to_pylist()  # Arrow reads it: no invalid UTF-8 left

    assert "not valid UTF-8" in row["reason"]
    assert base64.b64decode(row["raw"].removeprefix("base64:")) == line


def test_quarantine_keeps_raw_and_reason(spark):
    checked = check(spark, ['{"broken', event(messageId=None)])
    rows = to_quarantine(checked.filter("reason is not null"), quarantined_at=RECEIVED).collect()
    assert sorted(r.reason for r in rows) == ["missing messageId", "not a JSON object"]
    assert {r.raw for r in rows} >= {'{"broken'}
    assert all(r.quarantine_id and r.quarantine_date.isoformat() == "2026-11-01" for r in rows)


def test_duplicates_within_batch_and_against_bronze_are_dropped(spark):
    checked = check(spark, [event(), event(), event(messageId="m2"), event(messageId="m3")])
    existing = spark.createDataFrame([("m3",), (None,)], "message_id string")
    fresh = filter_new_messages(to_bronze(checked, PSEUDONYMS), existing)
    assert sorted(r.message_id for r in fresh.collect()) == ["m1", "m2"]


def test_a_batch_without_repeats_still_drops_what_bronze_has(spark):
    # commit_batch skips the in-batch dedupe (a shuffle of whole rows) when its ids are all distinct.
    checked = check(spark, [event(), event(messageId="m2"), event(messageId="m3")])
    existing = spark.createDataFrame([("m3",), ("m9",)], "message_id string")
    fresh = filter_new_messages(to_bronze(checked, PSEUDONYMS), existing, repeats_in_batch=False)
    assert sorted(r.message_id for r in fresh.collect()) == ["m1", "m2"]


def test_not_a_json_object_covers_broken_json_arrays_scalars_and_empty_lines(spark):
    lines = ['{"broken', "[1, 2]", '[{"type": "track"}]', '"text"', "42", "null", ""]
    checked = check(spark, lines)
    assert [r.reason for r in checked.collect()] == ["not a JSON object"] * len(lines)


def test_bronze_keeps_json_texts_without_contact_keys(spark):
    # The texts bronze keeps: properties as sent; traits and context without contact PII (keys compared
    # case-insensitively, escapes decoded); a value that is not an object passes through as its text.
    lines = [
        event(
            messageId="m1",
            type="identify",
            event=None,
            properties={"category": "shoes", "tags": ["a", "b"]},
            traits={"EMAIL": "ada@example.com", "plan": "pro", "prefs": {"email": {"marketing": True}}},
            context={"ip": "203.0.113.9", "Traits": {"email": "x@example.com"}, "device": {"type": "mobile"}},
        ),
        '{"type": "track", "event": "E", "messageId": "m2", "userId": "u", "timestamp": "2026-11-01T11:00:00Z",'
        ' "traits": ["not", "an object"], "context": {"\\u0069p": "198.51.100.1", "page": {"url": "https://shop.example/"}}}',
        event(messageId="m3", properties=None, context=None),
        event(messageId="m4", context="just text"),
    ]
    rows = {r.message_id: r for r in to_bronze(check(spark, lines), PSEUDONYMS).collect()}
    m1, m2, m3, m4 = (rows[m] for m in ("m1", "m2", "m3", "m4"))
    assert json.loads(m1.properties_json) == {"category": "shoes", "tags": ["a", "b"]}
    assert json.loads(m1.traits_json) == {"plan": "pro", "prefs": '{"email":{"marketing":true}}'}
    assert json.loads(m1.context_json) == {"device": '{"type":"mobile"}'}
    assert m2.traits_json == '["not","an object"]'
    assert json.loads(m2.context_json) == {"page": '{"url":"https://shop.example/"}'}
    assert (m3.properties_json, m3.traits_json, m3.context_json) == (None, None, None)
    assert m4.context_json == "just text" and json.loads(m4.properties_json)["category"] == "shoes"


CONTACTS = (
    "ada@example.com",
    "ada.l@example.org",
    "ada%40example.net",
    "+44 20 7946 0958",
    "(555) 123-4567",
    "5551234567",
    "15 Analytical Row",
    "Lovelace",
    "07700900123",
)


def test_contact_data_is_redacted_by_key_and_by_value_at_any_depth(spark):
    # #22 item 5: spellings of contact keys, nested contact objects, contact data in properties and in URLs.
    lines = [
        event(
            messageId="m1",
            type="identify",
            event=None,
            traits={
                "emailAddress": "ada@example.com",
                "EMAIL_ADDRESS": "ada@example.com",
                "phone_number": "5551234567",
                "mobile": "07700900123",
                " email": "ada@example.com",
                "plan": "pro",
                "contact": {"email": "ada.l@example.org", "phone": 5551234567, "lastName": "Lovelace"},
                "shipping": {"street_address": "15 Analytical Row", "city": "London"},
                "prefs": {"email": {"marketing": True}},
                "company": {"name": "Analytical Engines"},
            },
        ),
        event(
            messageId="m2",
            properties={
                "email": "ada@example.com",
                "phone": "+44 20 7946 0958",
                "category": "shoes",
                "billingPhone": "(555) 123-4567",
                "note": "call (555) 123-4567",
                "headphone": "Sony",
                "smartphone": "Pixel",
                "hotel": "Ritz",
            },
        ),
        event(
            messageId="m3",
            type="page",
            event=None,
            properties={"url": "https://shop.example/p?email=ada%40example.net&utm=x"},
            context={
                "page": {
                    "url": "https://shop.example/p?email=ada@example.com&phone=5551234567&ref=mail",
                    "search": "?Email=ada%40example.net",
                }
            },
        ),
        event(messageId="m4", properties={"query": "gift for ada@example.com", "url": "https://shop.example/?mobile=07700900123"}),
    ]
    rows = {r.message_id: r for r in to_bronze(check(spark, lines), PSEUDONYMS).collect()}
    for row in rows.values():
        stored = json.dumps(row.asDict(), default=str)
        leaked = [value for value in CONTACTS if value in stored]
        assert not leaked, (row.message_id, leaked)
    traits = json.loads(rows["m1"].traits_json)
    assert set(traits) == {"plan", "contact", "shipping", "prefs", "company"}  # top-level contact keys are dropped
    assert json.loads(traits["prefs"]) == {"email": {"marketing": True}}  # consent under an "email" key is kept
    assert json.loads(traits["shipping"])["city"] == "London"
    assert json.loads(traits["company"]) == {"name": "Analytical Engines"}
    properties = json.loads(rows["m2"].properties_json)
    assert properties["email"] == properties["phone"] == properties["billingPhone"] == "[redacted]"
    assert (properties["headphone"], properties["smartphone"], properties["hotel"], properties["category"]) == (
        "Sony",
        "Pixel",
        "Ritz",
        "shoes",
    )
    assert rows["m3"].url == "https://shop.example/p?email=[redacted]&utm=x"
    assert "ref=mail" in rows["m3"].context_json
    assert rows["m4"].search_query == "gift for [redacted]"


def test_traits_sent_only_in_context_traits_are_the_message_traits(spark):
    # #22 item 2: RudderStack's SDKs put identify traits in context.traits only.
    from lakecdp.events.contacts import contacts_from_identifies

    lines = [
        event(
            messageId="r1",
            type="identify",
            event=None,
            userId="cust_9",
            context={"traits": {"email": "Ada@Example.com ", "firstName": "Ada", "plan": "pro"}, "library": {"name": "analytics-python"}},
        ),
        event(
            messageId="r2",
            type="identify",
            event=None,
            userId="cust_9",
            traits={"plan": "team"},
            context={"traits": {"plan": "ignored: top-level traits win"}},
        ),
    ]
    checked = check(spark, lines)
    rows = {r.message_id: r for r in to_bronze(checked, PSEUDONYMS).collect()}
    assert json.loads(rows["r1"].traits_json) == {"plan": "pro"}
    assert json.loads(rows["r2"].traits_json) == {"plan": "team"}
    assert "traits" not in json.loads(rows["r1"].context_json)
    [contact] = contacts_from_identifies(checked.filter("reason is null"), PSEUDONYMS).collect()
    assert (contact.external_id, contact.email, contact.first_name) == ("cust_9", "ada@example.com", "Ada")


def test_a_repeated_key_keeps_no_contact_data_in_bronze_and_the_last_value_is_the_contact(spark):
    # A JSON object may repeat a key (RFC 8259 only says SHOULD be unique). Spark's map reader keeps
    # every value of it: each copy of a contact key leaves bronze's texts, and the contact is the
    # last value, the one JavaScript's and Python's JSON readers keep.
    from lakecdp.events.contacts import contacts_from_identifies

    line = (
        '{"type": "identify", "messageId": "d1", "userId": "cust_7", "timestamp": "2026-11-01T11:00:00Z",'
        ' "traits": {"name": "Ada Lovelace", "birthday": "1815-12-10", "plan": "pro", "plan": "team", "email": "old@example.com",'
        ' "email": "ada@example.com"},'
        ' "context": {"ip": "203.0.113.9", "traits": {"firstName": "Ada"}, "locale": "en-GB", "locale": "de-DE"}}'
    )
    checked = check(spark, [line])
    [row] = to_bronze(checked, PSEUDONYMS).collect()
    assert json.loads(row.traits_json) == {"plan": "team"}
    assert json.loads(row.context_json) == {"locale": "de-DE"}
    [contact] = contacts_from_identifies(checked.filter("reason is null"), PSEUDONYMS).collect()
    assert (contact.external_id, contact.email) == ("cust_7", "ada@example.com")
