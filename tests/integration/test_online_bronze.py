"""The Python bronze builder (lakecdp/online/bronze.py) writes the rows Spark's prepare_batch writes.

Hypothesis draws valid landing lines whose free-form parts vary the most: properties, traits and
context with nested objects and arrays, numbers Java writes its own way, strings with quotes,
backslashes, control characters and other scripts, contact data under every spelling of its key
and inside text (emails, phones, URL parameters), traits at the top or in context, repeated keys,
and sentAt in several spellings. Every row the builder builds must equal Spark's, column by column;
a line it leaves (None) goes to Spark in the stream, so it is not compared.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pyspark.sql import functions as F

from lakecdp.config.models import EventSettings
from lakecdp.events.ingest import prepare_batch
from lakecdp.lake.tables import EVENTS
from lakecdp.online.bronze import BronzeRows
from lakecdp.online.ingest import instant_us
from lakecdp.privacy.pseudonyms import Pseudonymizer

pytestmark = pytest.mark.integration

RECEIVED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RECEIVED_US = instant_us("2026-11-01T12:00:00Z")
SETTINGS = EventSettings(max_future_skew=timedelta(minutes=5), max_age=timedelta(days=400))
PSEUDONYMS = Pseudonymizer(b"differential-test-key-0123456789abcdef")
_MICROS = ("timestamp", "received_at", "sent_at")

texts = st.one_of(
    st.text(max_size=12),
    st.text(
        st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=12
    ),  # no character beyond U+FFFF: Python's encoder writes the line
    st.sampled_from(
        [
            "jane.doe@example.com",
            "write to Jane.Doe+shop@mail.example.co.uk today",
            "jane%40example.com",
            "call +44 20 7946 0958",
            "(555) 123-4567",
            "555-123-4567 or 555.123.4567",
            "https://shop.example.com/p?email=a%40b.co&x=1",
            "/checkout?phone=5551234567;tel=1",
            'a "quoted" \\ back',
            "tab\there\nline",
            "ctl\x01\x1f",
            "é ü 日本 🙂",
            "smartphone hotel",
            "v1.2.3 (X11; Linux x86_64)",
            "2026-11-01",
        ]
    ),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(1e-3, 1e7),  # where Python's repr and Java's Double.toString agree
    st.sampled_from([19.99, 0.1, 1e7, 2e-3, 123456.789, -0.0, 0.0, 1e15, 1e16, 1e-5, 9.060928488791458e16, 5e-324, 1e23]),
)
keys = st.one_of(
    st.sampled_from(
        [
            "email",
            "Email",
            "EMAIL_ADDRESS",
            "emailAddress",
            " email",
            "customerEmail",
            "billing_phone",
            "phone",
            "mobile_number",
            "first_name",
            "lastName",
            "name",
            "street",
            "address2",
            "tel",
            "smartphone",
            "hotel",
            "username",
            "price",
            "url",
            "query",
            "ip",
            "traits",
            "device",
        ]
    ),
    st.text(max_size=8),
)
values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=10,
)
objects = st.dictionaries(keys, values, max_size=6)
instants = st.sampled_from(["2026-11-01T11:59:00Z", "2026-11-01T11:59:00.123+02:00", "2026-10-31T23:59:59.999999Z"])


@st.composite
def messages(draw) -> dict:
    kind = draw(st.sampled_from(["track", "track", "page", "identify", "screen"]))
    message: dict = {"type": kind, "messageId": f"m-{draw(st.integers(0, 10**6))}", "timestamp": draw(instants)}
    message["userId" if draw(st.booleans()) else "anonymousId"] = draw(st.sampled_from(["cust_000001", "anon-7", "é-ü"]))
    if kind == "track":
        message["event"] = draw(st.sampled_from(["Product Viewed", "Order Completed", "Products Searched"]))
    properties = draw(objects) | draw(
        st.fixed_dictionaries({}, optional={"url": texts, "query": texts, "price": numbers, "category": texts})
    )
    choices = {
        "properties": st.just(properties) | st.none(),
        "traits": objects | st.none(),
        "context": st.fixed_dictionaries(
            {},
            optional={
                "device": st.fixed_dictionaries({"type": st.sampled_from(["mobile", "desktop"])}),
                "location": st.fixed_dictionaries({"country": st.just("DE"), "city": st.sampled_from(["Köln", "Osaka"])}),
                "timezone": st.just("Europe/Berlin"),
                "ip": st.just("203.0.113.7"),
                "userAgent": texts,
                "traits": objects | st.none() | st.just("text"),
                "library": objects,
                "page": st.fixed_dictionaries({"url": texts, "referrer": texts}),
            },
        ),
        "sentAt": instants | st.none() | st.sampled_from(["2026-11-01 11:59:00", "soon", 5]),
        "receivedAt": instants,
        "name": st.sampled_from(["Home", "Product"]),
    }
    for key in draw(st.sets(st.sampled_from(sorted(choices)))):
        message[key] = draw(choices[key])
    return message


@st.composite
def lines(draw) -> bytes:
    message = draw(messages())
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]))
    line = json.dumps(message, ensure_ascii=draw(st.booleans()), separators=separators)
    if draw(st.integers(0, 9)) == 0 and '"properties"' in line:  # a repeated key
        line = line.replace('"properties"' + separators[1] + "{", '"properties"' + separators[1] + '{"dup":1,"dup":2,', 1)
    return line.encode()


def spark_rows(spark, raws: list[bytes]) -> dict[int, dict]:
    """Per line index, the bronze row Spark writes (timestamps as µs), for the lines it finds valid."""
    frame = spark.createDataFrame([(raw, f"line-{n}") for n, raw in enumerate(raws)], "raw binary, source_file string")
    batch = prepare_batch(
        frame.select(F.col("raw").cast("string").alias("raw"), "source_file"),
        received_at=RECEIVED,
        settings=SETTINGS,
        pseudonyms=PSEUDONYMS,
    )
    try:
        columns = [F.unix_micros(c).alias(c) if c in _MICROS else F.col(c) for c in EVENTS.columns]
        rows = batch.valid.select(*columns).collect()
    finally:
        batch.release()
    return {int(row.source_file[5:]): row.asDict() for row in rows}


def built_rows(raws: list[bytes]) -> dict[int, dict]:
    builder = BronzeRows(SETTINGS, PSEUDONYMS)
    built = {n: builder.row(raw, f"line-{n}", RECEIVED_US) for n, raw in enumerate(raws)}
    return {n: row for n, row in built.items() if row is not None}


def assert_equal_rows(spark_says: dict[int, dict], built: dict[int, dict], raws: list[bytes]) -> None:
    for n, row in built.items():
        assert n in spark_says, ("built a row for a line Spark rejects", raws[n])
        differ = {c: (row.get(c), spark_says[n][c]) for c in EVENTS.columns if row.get(c) != spark_says[n][c]}
        assert not differ, (raws[n], differ)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(lines(), min_size=10, max_size=100))
def test_every_row_the_python_builder_writes_is_sparks_row(spark, raws):
    assert_equal_rows(spark_rows(spark, raws), built_rows(raws), raws)


def test_generated_traffic_is_built_in_python_as_spark_builds_it(spark):
    """What senders normally send never needs Spark's bronze job, and comes out as Spark writes it."""
    from lakecdp.generate import GeneratorSettings, generate_dataset

    dataset = generate_dataset(GeneratorSettings(customers=40, days=3, seed=5, end=RECEIVED))
    raws = [json.dumps(e).encode() for e in dataset.events]
    built = built_rows(raws)
    assert len(built) == len(raws), [raws[n] for n in range(len(raws)) if n not in built][:3]
    assert_equal_rows(spark_rows(spark, raws), built, raws)


def test_contact_data_is_redacted_in_the_rows_built_in_python(spark):
    """The builder's redaction is Spark's: an email in a property, a phone in a search, an email trait."""
    line = {
        "type": "identify",
        "messageId": "m-1",
        "userId": "cust_000001",
        "timestamp": "2026-11-01T11:00:00Z",
        "traits": {"email": "jane@example.com", "plan": "gold", "billing_phone": "+44 20 7946 0958"},
        "properties": {
            "note": "mail jane@example.com",
            "query": "call (555) 123-4567",
            "url": "https://x.example/?email=jane%40example.com",
        },
        "context": {"ip": "203.0.113.7", "traits": {"email": "jane@example.com"}, "page": {"search": "?email=jane@example.com"}},
    }
    raws = [json.dumps(line).encode()]
    built = built_rows(raws)
    assert set(built) == {0}
    texts = " ".join(str(v) for v in built[0].values())
    assert "jane" not in texts and "7946" not in texts and "123-4567" not in texts and "203.0.113" not in texts
    assert json.loads(built[0]["traits_json"]) == {"plan": "gold", "billing_phone": "[redacted]"}
    assert_equal_rows(spark_rows(spark, raws), built, raws)


def test_the_bronze_worker_builds_in_a_child_process_the_rows_built_here():
    """The flush's worker (a real child process) gives the rows and the lines left to Spark that this process gives."""
    from lakecdp.generate import GeneratorSettings, generate_dataset
    from lakecdp.online.bronze import BronzeWorker, build_table

    dataset = generate_dataset(GeneratorSettings(customers=10, days=2, seed=7, end=RECEIVED))
    odd = ['{"type":"track","event":"X","messageId":"m","userId":"u","timestamp":"2026-11-01T11:00:00Z","properties":{"a":1,"a":2}}', "{"]
    lines = [(text, f"line-{n}", RECEIVED_US) for n, text in enumerate([*(json.dumps(e) for e in dataset.events), *odd])]
    here, left_here = build_table(BronzeRows(SETTINGS, PSEUDONYMS), lines)
    worker = BronzeWorker(SETTINGS, PSEUDONYMS)
    try:
        for _ in range(2):  # one child serves every flush
            there, left_there = worker.build(lines)
            assert there.to_pylist() == here.to_pylist() and there.num_rows == len(dataset.events)
            assert left_there == left_here == [len(lines) - 2, len(lines) - 1]
    finally:
        worker.close()
    assert worker._process.returncode == 0
